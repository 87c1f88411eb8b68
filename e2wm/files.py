"""User files in and out, checked once here.

Reads name the file (and line) on every failure: a missing path, a directory or a device where a
file is expected, a symlink out of the folder it must stay in, non-UTF-8 bytes, JSON that is
malformed, too deep or holds NaN/Infinity, a file over its size limit. Writes are atomic (a
temporary name in the same folder, then rename: `atomic_file`, `write_atomic`, and `atomic_dir` for a
folder), get the user's umask, and JSON is finite.
Output folders are checked before any work starts and created only after that.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2wm.errors import E2WMError

MiB = 1 << 20
MAX_CONFIG_BYTES = 16 * MiB       # a YAML / JSON config or a scene
MAX_DATA_BYTES = 8 << 30         # a shard, a JSONL dataset, a suite, a corpus


# ---------------------------------------------------------------- inputs

def input_file(path: str | Path, what: str = "file", inside: str | Path | None = None,
               limit: int | None = None) -> Path:
    """`path` if it is a regular file (following symlinks, which must stay `inside` when given)."""
    if str(path).strip() == "":
        raise E2WMError(f"{what}: the path is empty")
    p = Path(path)
    if inside is not None:
        root = Path(inside).resolve()
        if not p.resolve().is_relative_to(root):
            raise E2WMError(f"{p}: {what} leads outside {inside}; refusing to read it")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise E2WMError(f"{p}: no such {what}") from None
    except OSError as e:
        raise E2WMError(f"{p}: cannot read {what} ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise E2WMError(f"{p}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise E2WMError(f"{p}: not a regular file (a device, pipe or socket), expected a {what}")
    if limit is not None and st.st_size > limit:
        raise E2WMError(f"{p}: {st.st_size:,} bytes, over the {limit:,}-byte limit for a {what}")
    return p


def input_dir(path: str | Path, what: str = "directory") -> Path:
    if str(path).strip() == "":
        raise E2WMError(f"{what}: the path is empty")
    p = Path(path)
    if not p.exists():
        raise E2WMError(f"{p}: no such {what}")
    if not p.is_dir():
        raise E2WMError(f"{p}: not a directory, expected a {what}")
    return p


def read_bytes(path: str | Path, what: str = "file", inside=None, limit: int = MAX_DATA_BYTES) -> bytes:
    p = input_file(path, what, inside, limit)
    try:
        return p.read_bytes()
    except OSError as e:
        raise E2WMError(f"{p}: cannot read {what} ({e.strerror or e})") from None


def decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise E2WMError(f"{where}:{line}: not UTF-8 text (byte {e.start})") from None


def read_text(path: str | Path, what: str = "file", inside=None, limit: int = MAX_CONFIG_BYTES) -> str:
    return decode(read_bytes(path, what, inside, limit), str(path))


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def loads(text: str, where: str, position: bool = True):
    """JSON text -> value; malformed, too deep or non-finite input is an E2WMError naming `where`
    (and the line:column in it, with `position`)."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        pos = f":{e.lineno}:{e.colno}" if position else ""
        raise E2WMError(f"{where}{pos}: malformed JSON: {e.msg}") from None
    except ValueError as e:   # NaN / Infinity, or an integer too long to parse
        raise E2WMError(f"{where}: malformed JSON: {e}") from None
    except RecursionError:
        raise E2WMError(f"{where}: JSON nested too deeply") from None


def read_json(path: str | Path, what: str = "JSON file", inside=None, limit: int = MAX_CONFIG_BYTES):
    return loads(read_text(path, what, inside, limit), str(path))


def read_object(path: str | Path, what: str, before: str = "", after: str = "") -> dict:
    """A JSON file that must hold an object (a `what`); any failure is one E2WMError line naming the
    file, with `before` ahead of it and `after` behind it."""
    try:
        data = read_json(path, what)
    except E2WMError as e:
        raise E2WMError(f"{before}{e}{after}") from None
    if not isinstance(data, dict):
        raise E2WMError(f"{before}{path}: expected a JSON object as a {what}, got {type(data).__name__}{after}")
    return data


def read_jsonl(path: str | Path, what: str = "JSONL file", inside=None,
               limit: int = MAX_DATA_BYTES) -> Iterator[tuple[int, object]]:
    """(line number, value) for every non-blank line; any bad line is an error naming PATH:LINE."""
    p = input_file(path, what, inside, limit)
    try:
        fh = p.open("rb")
    except OSError as e:
        raise E2WMError(f"{p}: cannot read {what} ({e.strerror or e})") from None
    with fh:
        for i, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{p}:{i}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise E2WMError(f"{where}: not UTF-8 text") from None
            value = loads(line, where, position=False)
            yield i, value


# ---------------------------------------------------------------- outputs

def finite(obj):
    """`obj` with every NaN / Infinity float replaced by None, so that it is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """JSON text of `obj`; non-finite numbers become null (JSON has no NaN or Infinity)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


_UMASK: int | None = None


def file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file under this process's umask."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a library to write (safetensors, torch.save); when the block
    completes it is fsync'd, given the user's umask and renamed to `path` (readers see old or new, never
    half); when it fails it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")   # hidden, and unique to this process
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())   # a library's mode (safetensors: 0600) -> the user's umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A new temporary folder beside `path` that replaces `path` when the block completes, its files given
    the user's umask; the old `path` is moved aside and removed only once the new one is in place, so
    `path` is never missing nor half-written. When the block fails the temporary folder is removed."""
    path = Path(path)
    tmp, old = (path.with_name(f".{path.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                os.chmod(f, file_mode())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` (text as UTF-8) to `path` through `atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, obj, indent: int | None = 1, **kw) -> Path:
    return write_atomic(path, dumps(obj, indent=indent, **kw) + "\n")


def apart(out: str | Path, inputs, flag: str = "--out") -> None:
    """Refuse an output folder that is, holds or lies inside any input it would be written from.

    `inputs` maps what the user wrote (a flag or config key) to a path, or is a list of such pairs; an
    input that is no local path (a hub id, `builtin:...`, None) is skipped. Symlinks are resolved, so
    a link to the input is the input. `--force` does not lift this: writing would replace or change
    the very files the command reads.
    """
    target = Path(out).resolve()
    pairs = inputs.items() if isinstance(inputs, dict) else inputs
    for name, spec in pairs:
        if spec is None or str(spec).strip() == "" or not os.path.lexists(spec):
            continue
        src = Path(spec).resolve()
        if src == target:
            how = "is"
        elif src.is_relative_to(target):
            how = "holds"
        elif target.is_relative_to(src):
            how = "lies inside"
        else:
            continue
        raise E2WMError(f"{flag} {out}: {how} the input {name} {spec}; writing there would change what it "
                        f"reads; choose another directory")


def output_dir(path: str | Path, flag: str = "--out", ours: tuple[str, ...] = (), force: bool = False,
               fresh: bool = False, inputs=()) -> Path:
    """Check an output folder before any work, without creating it.

    It may be absent or empty. A folder that holds files is ours to update only when it holds one
    of `ours` (e.g. a manifest) - unless `fresh`, where it must not exist at all; `force` adopts any
    folder. A file where a folder is expected is refused, and so is one that overlaps any of `inputs`
    ({flag or key: path}, see `apart`).
    """
    if str(path).strip() == "":
        raise E2WMError(f"{flag}: the path is empty")
    p = Path(path)
    apart(p, inputs, flag)
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise E2WMError(f"{flag} {p}: exists and is not a directory")
        if fresh and not force:
            raise E2WMError(f"{flag} {p}: already exists; choose a new directory")
        try:
            names = {c.name for c in p.iterdir()}
        except OSError as e:
            raise E2WMError(f"{flag} {p}: cannot list it ({e.strerror or e})") from None
        if names and not force and not (names & set(ours)):
            what = f" (it holds no {' or '.join(ours)})" if ours else ""
            raise E2WMError(f"{flag} {p}: a non-empty directory that is not e2wm output{what}; choose "
                            f"another, or pass --force to write into it")
    else:
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise E2WMError(f"{flag} {p}: {parent} is not a directory")
        if not os.access(parent, os.W_OK):
            raise E2WMError(f"{flag} {p}: cannot create it ({parent} is not writable)")
    return p


def make_dir(path: Path, flag: str = "--out") -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise E2WMError(f"{flag} {path}: cannot create it ({e.strerror or e})") from None
    return path
