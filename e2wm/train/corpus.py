"""General-text corpora (the Fisher's, the kl regulariser's, perplexity's): .txt, .jsonl, a datasets
directory, or the built-in `builtin:pydoc`."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import input_file, read_jsonl, read_object, read_text


class CorpusError(E2WMError):
    """A corpus spec cannot be read: missing file, bad JSON line, missing "text" field."""


def _pydoc_texts() -> list[str]:
    from pydoc_data.topics import topics  # ships with CPython: general English prose, no download

    return [topics[k].strip() for k in sorted(topics) if topics[k].strip()]


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
    if spec != "builtin:pydoc" and not Path(spec).exists():
        raise CorpusError(f"{field}: {spec}: not found (expected .txt, .jsonl, a datasets dir or builtin:pydoc)")
    if Path(spec).is_dir():
        check_saved_dataset(Path(spec), field)


def load_texts(spec: str, max_samples: int | None = None, field: str = "corpus") -> list[str]:
    """Documents from `spec` (path or `builtin:pydoc`), in a fixed order, empty ones dropped; a bad saved
    dataset's error names `field` (the flag or config key that gave `spec`)."""
    if spec == "builtin:pydoc":
        docs = _pydoc_texts()
    else:
        path = Path(spec)
        if not path.exists():
            raise CorpusError(f"{spec}: corpus not found (expected .txt, .jsonl, a datasets dir or builtin:pydoc)")
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

