"""Script lines in VirtualHome syntax: `[PutIn] <mug> (190) <microwave> (297)`, `[StandUp]`.

The dataset form `(1.190)` (script instance 1, node 190) parses too; the node id is what the world uses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from e2wm.errors import ScriptError
from e2wm.world.vocab import ACTION_ALIASES, ACTION_ARITY, ACTION_NAMES

_ACTION = re.compile(r"\s*\[(\w+)\]")
_ARG = re.compile(r"\s*<([^<>]+?)>\s*\(\s*(?:(\d+)\.)?(-?\d+)\s*\)")


@dataclass(frozen=True, slots=True)
class ScriptArg:
    name: str          # class name as written, lower-case with underscores
    id: int            # node id
    instance: int = 1  # script instance, only meaningful in the dataset form


@dataclass(frozen=True, slots=True)
class ScriptLine:
    action: str                  # upper-case key of vocab.ACTION_ARITY
    args: tuple[ScriptArg, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(a.id for a in self.args)

    def format(self, dataset: bool = False) -> str:
        """`[Walk] <kitchen> (11)`, or `[Walk] <kitchen> (1.11)` with dataset=True."""
        parts = [f"[{ACTION_NAMES[self.action]}]"]
        for a in self.args:
            parts.append(f"<{a.name}> ({a.instance}.{a.id})" if dataset else f"<{a.name}> ({a.id})")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.format()


def parse_line(text: str) -> ScriptLine:
    """Parse one script line; raise ScriptError naming the line and what is wrong."""
    m = _ACTION.match(text)
    if not m:
        raise ScriptError(f"script line {text!r}: expected '[Action] <class> (id) ...'")
    action = m.group(1).upper()
    action = ACTION_ALIASES.get(action, action)
    if action not in ACTION_ARITY:
        raise ScriptError(f"script line {text!r}: unknown action [{m.group(1)}]")
    args, pos = [], m.end()
    while True:
        am = _ARG.match(text, pos)
        if not am:
            break
        name = am.group(1).strip().lower().replace(" ", "_")
        inst = int(am.group(2)) if am.group(2) else 1
        args.append(ScriptArg(name, int(am.group(3)), inst))
        pos = am.end()
    if text[pos:].strip():
        raise ScriptError(f"script line {text!r}: cannot parse {text[pos:].strip()!r}")
    if len(args) != ACTION_ARITY[action]:
        raise ScriptError(f"script line {text!r}: [{ACTION_NAMES[action]}] takes "
                          f"{ACTION_ARITY[action]} argument(s), got {len(args)}")
    return ScriptLine(action, tuple(args))


def format_line(action: str, args: list[tuple[str, int]] | tuple = (), dataset: bool = False) -> str:
    """Format from an action key and (class name, id) pairs."""
    return ScriptLine(action.upper(), tuple(ScriptArg(n, i) for n, i in args)).format(dataset)


def parse_program(text: str) -> list[ScriptLine]:
    """Parse the script lines of a program text; lines without '[' (titles, blanks) are skipped."""
    lines = []
    for i, raw in enumerate(text.splitlines(), 1):
        raw = raw.strip()
        if "[" not in raw or raw.startswith("#"):
            continue
        try:
            lines.append(parse_line(raw))
        except ScriptError as e:
            raise ScriptError(f"line {i}: {e}") from None
    return lines
