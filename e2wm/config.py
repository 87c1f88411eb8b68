"""Shared config plumbing: YAML reading, typed dataclass building, `--set` overrides, derived CLI flags.

Each package owns its config dataclasses (`e2wm.collect.config`, `e2wm.data.config`,
`e2wm.train.config`); this module only turns mappings into them. Field types come from the
dataclass annotations, help texts from `field(metadata={"help": ...})`, and every error names the
file and the dotted field (`train.yaml: optim.lr: expected a number, got 'fast'`).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from importlib import resources
from pathlib import Path

import yaml

from e2wm.errors import E2WMError
from e2wm.files import read_text


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}",
                                                    key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first at line "
                                                    f"{seen[key].line + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str, where: str):
    """YAML text -> value; malformed YAML, a duplicate key, too deep nesting or a recursive alias names
    `where` (and the line)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise E2WMError(f"{where}{pos}: malformed YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise E2WMError(f"{where}: YAML nested too deeply") from None
    if _holds_itself(data):
        raise E2WMError(f"{where}: a recursive YAML alias (an anchor used inside its own value, like "
                        f"`a: &x [*x]`); a config must be a tree")
    return data


def _holds_itself(value) -> bool:
    """Whether a loaded YAML value contains itself (PyYAML builds `&x [*x]` as a list holding itself,
    which every later walk would follow forever). Shared, acyclic aliases are fine; each container is
    walked once, without recursion."""
    done: set[int] = set()
    stack = [(value, False)]
    path: set[int] = set()   # the containers between the root and `v`
    while stack:
        v, leaving = stack.pop()
        if leaving:
            path.discard(id(v))
            done.add(id(v))
            continue
        if not isinstance(v, (dict, list)) or id(v) in done:
            continue
        if id(v) in path:
            return True
        path.add(id(v))
        stack.append((v, True))
        stack += [(c, False) for c in (v.values() if isinstance(v, dict) else v)]
    return False


def read_yaml(path: str | Path | None, preset: str) -> tuple[dict, str]:
    """(mapping, where) of a YAML file, or of the packaged preset when `path` is None."""
    if path is None:
        text, where = resources.files("e2wm").joinpath("presets", preset).read_text(), f"preset {preset}"
    else:
        text, where = read_text(path, "config file"), str(path)
    data = load_yaml(text, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise E2WMError(f"{where}: expected a mapping of config keys, got {type(data).__name__}")
    return data, where


def check_ranges(obj, where: str = "") -> None:
    """Every field of dataclass `obj` whose metadata has `range: (low, high)` holds a number in it.

    The bounds live next to the field they guard; `high` keeps a typo (`plans: 1e12`) from
    exhausting memory or time. Call from `__post_init__`.
    """
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("range")
        if bounds is None:
            continue
        low, high = bounds
        v = getattr(obj, f.name)
        if v is None and f.default is None:   # an optional field left unset
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise E2WMError(f"{where}{f.name}={v!r}: expected a number in [{low}, {high}]")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(v, int):
            raise E2WMError(f"{where}{f.name}={v!r}: expected an int in [{low}, {high}]")
        if not low <= v <= high:
            raise E2WMError(f"{where}{f.name}={v!r}: must be in [{low}, {high}]")


def field_doc(text: str = "", **meta) -> dict:
    """`field` keywords: a help text and more metadata, e.g. the `range` that `check_ranges` enforces."""
    return {"metadata": {"help": text, **meta}}


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


# ---------------------------------------------------------------- typed building

def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if tp is int:
        return "an int"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, name: str):
    """`value` checked against annotation `tp`; returns the converted value or raises E2WMError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except E2WMError:
                errors.append(_describe(a))
        raise E2WMError(f"{name}: expected {' or '.join(errors)}{' or null' if type(None) in args else ''}, "
                        f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise E2WMError(f"{name}: expected a mapping, got {value!r}")
        return build(tp, value, prefix=f"{name}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise E2WMError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise E2WMError(f"{name}: expected an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):   # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise E2WMError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise E2WMError(f"{name}: expected a string, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise E2WMError(f"{name}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise E2WMError(f"{name}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(value) != len(args):
                raise E2WMError(f"{name}: expected a list of {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        if origin is list and args:
            return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
        return type(value)(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise E2WMError(f"{name}: expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        return {_coerce(k, args[0], f"{name} key"): _coerce(v, args[1], f"{name}.{k}") for k, v in value.items()}
    return value


def build(cls, data: dict, where: str | None = None, prefix: str = ""):
    """Dataclass `cls` from a mapping: unknown keys, wrong types and invalid values are E2WMErrors.

    The message names `where` (a file, or a preset) and the dotted field; `__post_init__` checks of
    the dataclass raise E2WMError("field: ...") and get the same prefix.
    """
    try:
        if not isinstance(data, dict):
            raise E2WMError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:   # dotted, so a typo in a section reads `mcts.simulatons`
            raise E2WMError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                            f"known: {', '.join(sorted(fields))}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            f = fields[k]
            if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict) and f.default_factory is not dataclasses.MISSING:
                v = {**to_plain(f.default_factory()), **v}   # a partial section keeps this field's defaults
            kwargs[k] = _coerce(v, hints[k], prefix + k)
        try:
            return cls(**kwargs)
        except E2WMError as e:
            if prefix and not str(e).startswith(prefix):
                raise E2WMError(f"{prefix}{e}") from None
            raise
    except E2WMError as e:
        if where:
            raise E2WMError(f"{where}: {e}") from None
        raise


def to_plain(obj):
    """A dataclass as plain YAML/JSON data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- overrides and flags

def apply_sets(data: dict, sets: list[str] | None) -> dict:
    """A copy of `data` with `section.key=value` overrides applied (values parsed as YAML)."""
    out = _deep_copy(data)
    for item in sets or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise E2WMError(f"--set {item!r}: expected section.key=value")
        try:
            value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
        except E2WMError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise E2WMError(f"--set {item!r}: {p} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deep_copy(d):
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


_FLAG_TYPES = {int: int, float: float, str: str}


def _scalar_type(tp):
    """The argparse type of a scalar annotation (Optional[X] -> X), or None for anything else."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = rest[0] if len(rest) == 1 else None
    if typing.get_origin(tp) is typing.Literal:
        return type(typing.get_args(tp)[0])
    return _FLAG_TYPES.get(tp)


def add_field_flags(parser, cls, skip=(), required=(), checked: bool = False) -> list[str]:
    """One `--field-name` flag per scalar field of `cls` (help from the field's metadata); their names.
    `checked`: argparse refuses a value outside an int field's `range` or a Literal's choices, in a line
    naming the flag."""
    from e2wm.argparser import bounded
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        kind = _scalar_type(hints[f.name])
        if f.name in skip or kind is None:
            continue
        choices = [a for t in (hints[f.name], *typing.get_args(hints[f.name]))
                   if typing.get_origin(t) is typing.Literal for a in typing.get_args(t)]
        if checked and kind is int and "range" in f.metadata:
            kind = bounded(*f.metadata["range"])
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            required=f.name in required, help=help_of(f), choices=choices if checked and choices
                            else None)
        names.append(f.name)
    return names


def flag_values(args, names: list[str]) -> dict:
    """{field: value} of the derived flags the user gave."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}
