"""General-text corpora (the Fisher's, the kl regulariser's, perplexity's): .txt, .jsonl, a datasets
directory, or the built-in `builtin:pydoc`."""
from __future__ import annotations

import hashlib
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import read_jsonl, read_text


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


def _datasets_texts(path: Path) -> list[str]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise CorpusError(f"{path}: not a saved dataset ({str(e).splitlines()[0]})") from None
    if isinstance(ds, DatasetDict):  # a saved split dict: prefer "train", else the first split
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    if "text" not in ds.column_names:
        raise CorpusError(f"{path}: dataset has no \"text\" column (columns: {ds.column_names})")
    texts = list(ds["text"])
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise CorpusError(f"{path} row {bad}: \"text\" is not a string")
    return texts


def check_corpus(spec: str, field: str = "corpus") -> None:
    """Cheap check before heavy work: the spec names a builtin or an existing file or directory."""
    if not spec.strip():
        raise CorpusError(f"{field}: the path is empty")
    if spec != "builtin:pydoc" and not Path(spec).exists():
        raise CorpusError(f"{field}: {spec}: not found (expected .txt, .jsonl, a datasets dir or builtin:pydoc)")


def load_texts(spec: str, max_samples: int | None = None) -> list[str]:
    """Documents from `spec` (path or `builtin:pydoc`), in a fixed order, empty ones dropped."""
    if spec == "builtin:pydoc":
        docs = _pydoc_texts()
    else:
        path = Path(spec)
        if not path.exists():
            raise CorpusError(f"{spec}: corpus not found (expected .txt, .jsonl, a datasets dir or builtin:pydoc)")
        if path.is_dir():
            docs = _datasets_texts(path)
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


def read_range(spec: str, start: int, end: int | None, where: str) -> tuple[list[str], dict]:
    """Documents [start, end) of `spec` (end None: to the last) and the record of what was read (corpus,
    range, sha256): evaluation compares it with its own documents, which must not be among them."""
    docs = load_texts(spec)
    stop = len(docs) if end is None else end
    if not start < stop <= len(docs):
        raise CorpusError(f"{where}: documents {start}..{stop - 1} asked, but {spec} holds {len(docs)}")
    texts = docs[start:stop]
    return texts, {"corpus": spec, "start": start, "end": stop, "corpus_sha256": corpus_hash(texts)}

