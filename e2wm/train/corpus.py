"""General-text corpora (the Fisher's, the kl regulariser's, perplexity's, local pretraining's): .txt, .jsonl,
a datasets directory, or a built-in one (`BUILTINS`): `builtin:pydoc`, Python's 79 documentation topics, or
`builtin:stdlib`, those topics and the docstrings of the standard library, a few thousand documents."""
from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import input_file, read_jsonl, read_object, read_text


class CorpusError(E2WMError):
    """A corpus spec cannot be read: missing file, bad JSON line, missing "text" field."""


BUILTINS = ("builtin:pydoc", "builtin:stdlib")   # the built-in corpora, no download
_ACCEPTED = f".txt, .jsonl, a datasets dir, {' or '.join(BUILTINS)}"


def _pydoc_texts() -> list[str]:
    from pydoc_data.topics import topics  # ships with CPython: general English prose, no download

    return [topics[k].strip() for k in sorted(topics) if topics[k].strip()]


# ---------------------------------------------------------------- builtin:stdlib

# never read: tests, GUIs and their demos, bundled wheels, third-party packages, build-time data of this machine
_STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "idlelib", "tkinter", "lib2to3", "ensurepip", "turtledemo",
                          "__phello__", "site-packages", "dist-packages", "__pycache__", "pydoc_data", "lib-dynload"})
STDLIB_MIN, STDLIB_TARGET, STDLIB_MAX = 200, 250, 4000   # a document's characters: at least, aimed at, at most


def _normalise(text: str) -> str:
    """Tabs expanded, trailing spaces dropped, runs of blank lines made one, ends stripped."""
    lines = [line.rstrip() for line in text.expandtabs(8).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _bounded(text: str, limit: int = STDLIB_MAX) -> list[str]:
    """`text` as pieces of at most `limit` characters, cut between paragraphs, else between lines, else anywhere."""
    if len(text) <= limit:
        return [text]
    for sep in ("\n\n", "\n"):
        parts = text.split(sep)
        if len(parts) > 1:
            out, cur = [], ""
            for part in (p for q in parts for p in _bounded(q, limit)):
                if cur and len(cur) + len(sep) + len(part) > limit:
                    out.append(cur)
                    cur = ""
                cur = cur + sep + part if cur else part
            return out + [cur] if cur else out
    return [text[i:i + limit] for i in range(0, len(text), limit)]


def _pack(pieces: list[str]) -> list[str]:
    """Consecutive pieces (of one source) joined into documents of STDLIB_TARGET..STDLIB_MAX characters; one that
    stays under STDLIB_MIN (the last, or one the next piece would overflow) joins the one before if it fits, else
    is dropped."""
    docs: list[str] = []

    def close(doc: str) -> None:
        if len(doc) >= STDLIB_MIN:
            docs.append(doc)
        elif doc and docs and len(docs[-1]) + 2 + len(doc) <= STDLIB_MAX:
            docs[-1] += "\n\n" + doc

    cur = ""
    for piece in (b for p in pieces for b in _bounded(p)):
        if cur and len(cur) + 2 + len(piece) > STDLIB_MAX:
            close(cur)
            cur = ""
        cur = cur + "\n\n" + piece if cur else piece
        if len(cur) >= STDLIB_TARGET:
            close(cur)
            cur = ""
    close(cur)
    return docs


def _stdlib_modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of the standard library's pure-Python modules, sorted by name, `_STDLIB_SKIP`'s folders,
    build-configuration folders and this machine's `_sysconfigdata*` left out."""
    import sysconfig
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP and not d.startswith("config-") and d.isidentifier()]
        rel = Path(folder).relative_to(root).parts
        for f in files:
            if f.endswith(".py") and not f.startswith("_sysconfigdata") and f[:-3].isidentifier():
                name = rel + (() if f == "__init__.py" else (f[:-3],))
                if name:
                    found.append((".".join(name), Path(folder) / f))
    return sorted(found)


def _docstrings(source: bytes) -> list[str]:
    """The module's docstring, then in source order those of its public classes and functions and of their
    public methods (and special methods such as __init__), read with `ast`: nothing is imported."""
    import ast
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # invalid escape sequences in old modules' sources
        tree = ast.parse(source)
    out = []

    def visit(node, depth):
        doc = ast.get_docstring(node)
        if doc and doc.strip():
            out.append(_normalise(doc))
        if depth < 2:
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                        not child.name.startswith("_") or child.name.startswith("__") and child.name.endswith("__")):
                    visit(child, depth + 1)
    visit(tree, 0)
    return out


@lru_cache(maxsize=1)
def _stdlib_texts() -> tuple[str, ...]:
    """`builtin:stdlib`: the pydoc topics cut into documents of at most STDLIB_MAX characters, then each module's
    docstrings (sorted by module name) packed into documents of STDLIB_TARGET..STDLIB_MAX characters; a docstring
    seen before (inherited text, re-exports) is skipped, as is a repeated document. The documents are then ordered
    by the sha256 of their text, a fixed shuffle: a contiguous slice (the Fisher's first documents, perplexity's
    last) is a sample of the whole, not of a few modules. The texts hold docstrings only, no file path; they
    depend on the Python version (and its distributor's patches), which `corpus_hash` records."""
    docs = [d for t in _pydoc_texts() for d in _pack([_normalise(t)])]
    seen = set()
    for _, path in _stdlib_modules():
        try:
            pieces = _docstrings(path.read_bytes())
        except (SyntaxError, ValueError, OSError):   # a module this Python cannot parse: not documentation
            continue
        fresh = [p for p in pieces if p not in seen]
        seen.update(fresh)
        docs += _pack(fresh)
    unique = list(dict.fromkeys(docs))
    return tuple(sorted(unique, key=lambda d: hashlib.sha256(d.encode("utf-8")).digest()))


def _txt_texts(path: Path) -> list[str]:
    docs, cur = [], []
    for line in read_text(path, "corpus file", limit=None).splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            docs.append("\n".join(cur))
            cur = []
    if cur:
        docs.append("\n".join(cur))
    return docs


def _jsonl_texts(path: Path) -> list[str]:
    docs = []
    for i, row in read_jsonl(path, "corpus file"):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise CorpusError(f"{path}:{i}: expected an object with a string field \"text\"")
        docs.append(row["text"])
    return docs


# ---------------------------------------------------------------- saved `datasets` directories

# what `save_to_disk` writes in state.json: key -> (accepted types, what it must be)
_STATE = {"_data_files": ((list,), "a non-empty list of {\"filename\": ...} objects"),
          "_fingerprint": ((str,), "a string"), "_split": ((str, type(None)), "a string or null"),
          "_format_type": ((str, type(None)), "a string or null"), "_format_kwargs": ((dict,), "an object"),
          "_format_columns": ((list, type(None)), "a list of column names or null"),
          "_output_all_columns": ((bool,), "true or false")}


def _json_object(path: Path, field: str) -> dict:
    return read_object(path, "datasets metadata file", before=f"{field}: ")


def _check_split_dir(path: Path, field: str) -> None:
    """`path` holds a Dataset as `save_to_disk` wrote it: state.json, dataset_info.json and the arrow files
    state.json names, inside the folder."""
    for name in ("state.json", "dataset_info.json"):
        if not (path / name).is_file():
            raise E2WMError(f"{field}: {path}: not a saved dataset (no {name})")
    state = _json_object(path / "state.json", field)
    for key, (types, what) in _STATE.items():
        if key not in state:
            raise E2WMError(f"{field}: {path / 'state.json'}: lacks \"{key}\"")
        if not isinstance(state[key], types):
            raise E2WMError(f"{field}: {path / 'state.json'}: \"{key}\" must be {what}, got {state[key]!r:.60}")
    files = state["_data_files"]
    if not files or not all(isinstance(f, dict) and isinstance(f.get("filename"), str) for f in files):
        raise E2WMError(f"{field}: {path / 'state.json'}: \"_data_files\" must be {_STATE['_data_files'][1]}")
    for f in files:
        try:
            input_file(path / f["filename"], "arrow file of the dataset", inside=path)
        except E2WMError as e:
            raise E2WMError(f"{field}: {path / 'state.json'} names {f['filename']!r}: {e}") from None
    columns = state["_format_columns"] or []
    if not all(isinstance(c, str) for c in columns):
        raise E2WMError(f"{field}: {path / 'state.json'}: \"_format_columns\" must be {_STATE['_format_columns'][1]}")
    info = _json_object(path / "dataset_info.json", field)
    for key, types, what in (("features", (dict,), "an object"), ("splits", (dict, list), "an object or a list")):
        if info.get(key) is not None and not isinstance(info[key], types):
            raise E2WMError(f"{field}: {path / 'dataset_info.json'}: \"{key}\" must be {what}, got {info[key]!r:.60}")


def check_saved_dataset(path: Path, field: str) -> None:
    """`path` is a Dataset or DatasetDict folder as `save_to_disk` wrote it (the JSON `load_from_disk`
    reads, with the types it expects; every split and arrow file there), else one line naming `field`.
    A Dataset's files win over dataset_dict.json, as in `load_from_disk`."""
    if (path / "state.json").is_file() or (path / "dataset_info.json").is_file() \
            or not (path / "dataset_dict.json").is_file():
        _check_split_dir(path, field)
        return
    meta = _json_object(path / "dataset_dict.json", field)
    splits = meta.get("splits")
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) and s for s in splits):
        raise E2WMError(f"{field}: {path / 'dataset_dict.json'}: \"splits\" must be a non-empty list of split "
                        f"names, got {splits!r:.60}")
    for split in splits:
        if Path(split).name != split or split in (".", ".."):
            raise E2WMError(f"{field}: {path / 'dataset_dict.json'}: split {split!r} is not a folder name")
        if not (path / split).is_dir():
            raise E2WMError(f"{field}: {path / 'dataset_dict.json'} lists split {split!r}, but {path / split} "
                            f"is not a folder")
        _check_split_dir(path / split, field)


# what `datasets` and pyarrow raise on files their own JSON checks cannot vouch for (garbage or truncated
# arrow files, features that do not fit the data); pyarrow's errors subclass ValueError or OSError
_LIBRARY_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError)


@contextmanager
def saved_dataset_errors(path: Path, field: str):
    """Turn what `datasets` raises while loading or reading `path` into one line naming `field`."""
    try:
        yield
    except _LIBRARY_ERRORS as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise E2WMError(f"{field}: {path}: the saved dataset cannot be read ({why})") from None


def load_saved_dataset(path: Path, field: str):
    """`datasets.load_from_disk(path)` after `check_saved_dataset`; errors name `field`."""
    from datasets import load_from_disk

    check_saved_dataset(path, field)
    with saved_dataset_errors(path, field):
        return load_from_disk(str(path))


def _datasets_texts(path: Path, field: str) -> list[str]:
    from datasets import DatasetDict

    ds = load_saved_dataset(path, field)
    if isinstance(ds, DatasetDict):  # a saved split dict: prefer "train", else the first split
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    if "text" not in ds.column_names:
        raise CorpusError(f"{field}: {path}: dataset has no \"text\" column (columns: {ds.column_names})")
    with saved_dataset_errors(path, field):
        texts = list(ds["text"])
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise CorpusError(f"{field}: {path} row {bad}: \"text\" is not a string")
    return texts


def check_corpus(spec: str, field: str = "corpus") -> None:
    """Cheap check before heavy work: the spec names a builtin, an existing file, or a saved dataset whose
    metadata is what `datasets` writes."""
    if not spec.strip():
        raise CorpusError(f"{field}: the path is empty")
    if spec not in BUILTINS and not Path(spec).exists():
        raise CorpusError(f"{field}: {spec}: not found (expected {_ACCEPTED})")
    if Path(spec).is_dir():
        check_saved_dataset(Path(spec), field)


def load_texts(spec: str, max_samples: int | None = None, field: str = "corpus") -> list[str]:
    """Documents from `spec` (a path or one of `BUILTINS`), in a fixed order, empty ones dropped; a bad saved
    dataset's error names `field` (the flag or config key that gave `spec`)."""
    if spec == "builtin:pydoc":
        docs = _pydoc_texts()
    elif spec == "builtin:stdlib":
        docs = list(_stdlib_texts())
    else:
        path = Path(spec)
        if not path.exists():
            raise CorpusError(f"{spec}: corpus not found (expected {_ACCEPTED})")
        if path.is_dir():
            docs = _datasets_texts(path, field)
        elif path.suffix == ".jsonl":
            docs = _jsonl_texts(path)
        elif path.suffix == ".txt":
            docs = _txt_texts(path)
        else:
            raise CorpusError(f"{spec}: unsupported corpus type {path.suffix!r} (use .txt, .jsonl or a datasets dir)")
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise CorpusError(f"{spec}: corpus is empty")
    return docs[:max_samples] if max_samples is not None else docs


def corpus_hash(texts: list[str]) -> str:
    """sha256 over the documents, length-prefixed so that boundaries matter."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


SLICE_MIN = 100   # documents: the fewest a kl or pretraining slice of its own holds


def general_slices(n: int, fisher: int | None, ppl: int) -> dict[str, range]:
    """The pipeline's four slices of an `n`-document corpus, in this order: "fisher" the first `fisher` documents
    (None or 0: all it can have), "kl" (a kl run's), "pretrain" (local pretraining's), "ppl" perplexity's last
    `ppl`. Between the Fisher's and perplexity's, the kl slice takes the first half and pretraining the rest
    (the odd one), all four disjoint, when each half holds at least SLICE_MIN documents. A smaller corpus keeps
    the layout of three slices: kl reads everything between the Fisher's and perplexity's, and pretraining
    every document but perplexity's (the Fisher's and kl's too: `pretrain_is_own` says which). An empty "fisher"
    means that the corpus holds no more than perplexity's documents; the caller says so."""
    held = max(n - ppl, 0)
    first = min(fisher or held, held)
    rest = held - first
    if rest >= 2 * SLICE_MIN:
        mid = first + rest // 2
        return {"fisher": range(first), "kl": range(first, mid), "pretrain": range(mid, held), "ppl": range(held, n)}
    return {"fisher": range(first), "kl": range(first, held), "pretrain": range(held), "ppl": range(held, n)}


def pretrain_is_own(slices: dict[str, range]) -> bool:
    """Whether `general_slices` gave pretraining a slice of its own (else it reads the Fisher's and kl's too)."""
    return slices["pretrain"].start >= slices["kl"].stop


def read_range(spec: str, start: int, end: int | None, where: str,
               field: str = "corpus") -> tuple[list[str], dict]:
    """Documents [start, end) of `spec` (end None: to the last) and the record of what was read (corpus,
    range, sha256): evaluation compares it with its own documents, which must not be among them."""
    docs = load_texts(spec, field=field)
    stop = len(docs) if end is None else end
    if not start < stop <= len(docs):
        raise CorpusError(f"{where}: documents {start}..{stop - 1} asked, but {spec} holds {len(docs)}")
    texts = docs[start:stop]
    return texts, {"corpus": spec, "start": start, "end": stop, "corpus_sha256": corpus_hash(texts)}

