"""JSON Lines reading with errors that name the file and line."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from e2wm.errors import E2WMError


def read_jsonl(path: Path, error: type[E2WMError] = E2WMError) -> Iterator[tuple[int, object]]:
    """(line number, value) for every non-blank line; a malformed one raises `error` naming PATH:LINE."""
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{i}: invalid JSON ({e.msg})") from None
