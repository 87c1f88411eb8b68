"""Goal facts: the atomic conditions a plan must bring about, and the test of each on a World.

Three kinds, each one state bit or one edge look-up on a World:
  state  node has a state            "<tv> (12) || ON"
  edge   an edge a -REL-> b exists   "<mug> (190) || INSIDE || <microwave> (297)"
  holds  a character holds b (either hand)  "<character> (1) || HOLDS || <mug> (190)"
The text form (E2WM's `"a || REL || b"` with VirtualHome's `<class> (id)` labels) is what episodes
store; `Fact.parse` reads it back exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from e2wm.errors import E2WMError
from e2wm.world.vocab import REL, STATE_BIT

HOLDS = "HOLDS"
_LABEL = re.compile(r"^<([^<>]+)> \((-?\d+)\)$")


@dataclass(frozen=True, order=True, slots=True)
class Fact:
    kind: str           # "state" | "edge" | "holds"
    a: int
    name: str           # a state name, a relation name, or HOLDS
    b: int = -1         # the second node of an edge or holds fact; -1 for a state fact

    @staticmethod
    def state(a: int, name: str) -> "Fact":
        if name not in STATE_BIT:
            raise E2WMError(f"fact: unknown state {name!r}")
        return Fact("state", a, name)

    @staticmethod
    def edge(a: int, relation: str, b: int) -> "Fact":
        if relation not in REL:
            raise E2WMError(f"fact: unknown relation {relation!r}")
        return Fact("edge", a, relation, b)

    @staticmethod
    def holding(character: int, obj: int) -> "Fact":
        return Fact("holds", character, HOLDS, obj)

    def holds(self, w) -> bool:
        """Whether the fact is true in World `w`."""
        if self.kind == "state":
            return bool(w.states(self.a) & STATE_BIT[self.name])
        if self.kind == "edge":
            return w.has_edge(self.a, REL[self.name], self.b)
        return w.holds(self.a, self.b)

    def nodes(self) -> tuple[int, ...]:
        return (self.a,) if self.kind == "state" else (self.a, self.b)

    def text(self, scene) -> str:
        label = scene.node_label
        if self.kind == "state":
            return f"{label(self.a)} || {self.name}"
        return f"{label(self.a)} || {self.name} || {label(self.b)}"

    @staticmethod
    def parse(text: str, scene=None) -> "Fact":
        """The inverse of `text`; with a scene, the labels must name its nodes."""
        parts = text.split(" || ")
        if len(parts) not in (2, 3):
            raise E2WMError(f"fact {text!r}: expected '<a> (id) || NAME' or '<a> (id) || REL || <b> (id)'")
        a = _node(parts[0], text, scene)
        if len(parts) == 2:
            return Fact.state(a, parts[1])
        b = _node(parts[2], text, scene)
        return Fact.holding(a, b) if parts[1] == HOLDS else Fact.edge(a, parts[1], b)


def _node(label: str, text: str, scene) -> int:
    m = _LABEL.match(label.strip())
    if not m:
        raise E2WMError(f"fact {text!r}: {label!r} is not a node label like '<mug> (190)'")
    i = int(m.group(2))
    if scene is not None and scene.class_name.get(i) != m.group(1):
        raise E2WMError(f"fact {text!r}: the scene has no node <{m.group(1)}> ({i})")
    return i


def count_true(facts, w) -> int:
    return sum(1 for f in facts if f.holds(w))
