"""The immutable part of a scene graph, read from and written to VirtualHome JSON.

A `Scene` holds what no action changes (node ids, classes, categories, properties, every other
field of the node dicts) plus the initial states and edges. Worlds built on it share it; only
states and edges live per world.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from e2wm.errors import SceneError
from e2wm.world.vocab import (BODY_PART, PROP_BIT, REL, RELATIONS, ROOM_CATEGORY, STATE_BIT,
                              state_names)


@dataclass(eq=False)
class Scene:
    nodes: list[dict]                    # the input node dicts, unchanged (order and extra fields)
    ids: tuple[int, ...]
    class_name: dict[int, str]
    category: dict[int, str | None]
    props: dict[int, int]                # property bit set per node
    init_states: dict[int, int]          # state bit set per node
    edges: list[tuple[int, int, int]]    # (from, relation, to), deduplicated, input order
    rooms: frozenset[int]
    characters: tuple[int, ...]          # character node ids, sorted: agent i is characters[i]
    body_parts: tuple[int, ...]
    by_class: dict[str, tuple[int, ...]]
    lines: dict = field(default_factory=dict)      # script line -> (rule, ids) or failure reason
    formatted: dict = field(default_factory=dict)  # (action, ids) -> script line text

    @staticmethod
    def from_dict(d: dict, where: str = "scene") -> "Scene":
        return _parse(d, where)

    def node_label(self, i: int) -> str:
        return f"<{self.class_name[i]}> ({i})"

    def node_dict(self, i: int, states: int) -> dict:
        """The node's input dict with its current states (input order kept when unchanged)."""
        out = copy.deepcopy(self._node_by_id[i])
        if states != self.init_states[i]:
            out["states"] = state_names(states)
        return out

    @property
    def _node_by_id(self) -> dict[int, dict]:
        cache = self.__dict__.get("_nbi")
        if cache is None:
            cache = self.__dict__["_nbi"] = {n["id"]: n for n in self.nodes}
        return cache


def _parse(d: dict, where: str) -> Scene:
    if not isinstance(d, dict) or not isinstance(d.get("nodes"), list):
        raise SceneError(f"{where}: expected a dict with a 'nodes' list and an 'edges' list")
    raw_edges = d.get("edges", [])
    if not isinstance(raw_edges, list):
        raise SceneError(f"{where}: 'edges' must be a list")
    nodes, class_name, category, props, states = [], {}, {}, {}, {}
    for k, n in enumerate(d["nodes"]):
        if not isinstance(n, dict) or "id" not in n:
            raise SceneError(f"{where}: node #{k} has no 'id'")
        i = n["id"]
        if not isinstance(i, int) or isinstance(i, bool):
            raise SceneError(f"{where}: node #{k} has a non-integer id {i!r}")
        if i in class_name:
            raise SceneError(f"{where}: node #{k} repeats id {i}")
        if not isinstance(n.get("class_name"), str) or not n["class_name"]:
            raise SceneError(f"{where}: node {i} has no 'class_name'")
        class_name[i] = n["class_name"]
        category[i] = n.get("category")
        props[i] = _bits(n.get("properties", []), PROP_BIT, "properties", where, i, n)
        states[i] = _bits(n.get("states", []), STATE_BIT, "states", where, i, n)
        nodes.append(copy.deepcopy(n))   # the caller may go on editing its dicts
    edges, seen = [], set()
    for k, e in enumerate(raw_edges):
        if not isinstance(e, dict) or not {"from_id", "relation_type", "to_id"} <= e.keys():
            raise SceneError(f"{where}: edge #{k} needs from_id, relation_type and to_id")
        a, rname, b = e["from_id"], e["relation_type"], e["to_id"]
        r = REL.get(str(rname).upper())
        if r is None:
            raise SceneError(f"{where}: edge #{k} ({a} {rname} {b}) has unknown relation "
                             f"{rname!r}; known: {', '.join(RELATIONS)}")
        for end in (a, b):
            if not isinstance(end, int) or end not in class_name:
                raise SceneError(f"{where}: edge #{k} ({a} {rname} {b}) points to missing node {end!r}")
        if (a, r, b) not in seen:
            seen.add((a, r, b))
            edges.append((a, r, b))
    ids = tuple(class_name)
    by_class: dict[str, list[int]] = {}
    for i in ids:
        by_class.setdefault(class_name[i], []).append(i)
    return Scene(
        nodes=nodes, ids=ids, class_name=class_name, category=category, props=props,
        init_states=states, edges=edges,
        rooms=frozenset(i for i in ids if category[i] == ROOM_CATEGORY),
        characters=tuple(sorted(by_class.get("character", ()))),
        body_parts=tuple(i for i in ids if props[i] & BODY_PART),
        by_class={c: tuple(v) for c, v in by_class.items()},
    )


def _bits(names, table: dict[str, int], kind: str, where: str, i: int, node: dict) -> int:
    if not isinstance(names, list):
        raise SceneError(f"{where}: node {i} <{node['class_name']}>: '{kind}' must be a list")
    bits = 0
    for s in names:
        b = table.get(str(s).upper())
        if b is None:
            raise SceneError(f"{where}: node {i} <{node['class_name']}> has unknown "
                             f"{kind[:-1] if kind == 'states' else 'property'} {s!r}")
        bits |= b
    return bits
