"""Reading evaluation sets in E2WM's released format: one JSON object per line (or one JSON list
of them), generation rows {"input", "ref"} or multiple-choice rows {"input", "answer_list",
"answer"} with the answer among the options."""
from __future__ import annotations

from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import MAX_DATA_BYTES, loads, read_text


def _kind(row) -> str | None:
    """"gen" or "mc" for a well-formed row, else None."""
    if not isinstance(row, dict) or not isinstance(row.get("input"), str):
        return None
    if isinstance(row.get("ref"), str):
        return "gen"
    options = row.get("answer_list")
    if (isinstance(options, list) and options and all(isinstance(o, str) for o in options)
            and row.get("answer") in options):
        return "mc"
    return None


def read_eval(path) -> tuple[str, list[dict]]:
    """(kind, rows) of an evaluation file; E2WMError naming file:line on a malformed row, a row of
    the other kind, or an empty file. In a JSON-list file, line numbers count rows from 1."""
    path = Path(path)
    text = read_text(path, "suite file", limit=MAX_DATA_BYTES)
    if text.lstrip().startswith("["):
        numbered = list(enumerate(loads(text, str(path)), 1))
    else:
        numbered = [(i, loads(line, f"{path}:{i}", position=False))
                    for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise E2WMError(f"{path}: no rows")
    kind = None
    for i, row in numbered:
        k = _kind(row)
        if k is None:
            raise E2WMError(f"{path}:{i}: expected {{'input', 'ref'}} strings or 'input', "
                            f"'answer_list' (strings) and 'answer' among them")
        if kind not in (None, k):
            raise E2WMError(f"{path}:{i}: a {k} row in a {kind} file")
        kind = k
    return kind, [row for _, row in numbered]
