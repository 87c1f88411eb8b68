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


def _short(v) -> str:
    """repr of a value from the user's file, cut so that an error stays one readable line."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse(d: dict, where: str) -> Scene:
    if not isinstance(d, dict):
        raise SceneError(f"{where}: expected a JSON object with a 'nodes' list and an 'edges' list, "
                         f"got {type(d).__name__}")
    if not isinstance(d.get("nodes"), list):
        raise SceneError(f"{where}: 'nodes' must be a list, got {_short(d.get('nodes'))}")
    raw_edges = d.get("edges", [])
    if not isinstance(raw_edges, list):
        raise SceneError(f"{where}: 'edges' must be a list, got {_short(raw_edges)}")
    nodes, class_name, category, props, states = [], {}, {}, {}, {}
    for k, n in enumerate(d["nodes"]):
        if not isinstance(n, dict):
            raise SceneError(f"{where}: node #{k} must be an object, got {_short(n)}")
        if "id" not in n:
            raise SceneError(f"{where}: node #{k} has no 'id'")
        i = n["id"]
        if not _is_id(i):
            raise SceneError(f"{where}: node #{k} has a non-integer id {_short(i)}")
        if i in class_name:
            raise SceneError(f"{where}: node #{k} repeats id {i}")
        if not isinstance(n.get("class_name"), str) or not n["class_name"]:
            raise SceneError(f"{where}: node {i} has no 'class_name' string "
                             f"(got {_short(n.get('class_name'))})")
        if not isinstance(n.get("category"), (str, type(None))):
            raise SceneError(f"{where}: node {i} <{n['class_name']}>: 'category' must be a string, "
                             f"got {_short(n['category'])}")
        class_name[i] = n["class_name"]
        category[i] = n.get("category")
        props[i] = _bits(n.get("properties", []), PROP_BIT, "properties", where, i, n)
        states[i] = _bits(n.get("states", []), STATE_BIT, "states", where, i, n)
        try:
            nodes.append(copy.deepcopy(n))   # the caller may go on editing its dicts
        except RecursionError:
            raise SceneError(f"{where}: node {i} <{n['class_name']}> is nested too deeply") from None
    edges, seen = [], set()
    for k, e in enumerate(raw_edges):
        if not isinstance(e, dict) or not {"from_id", "relation_type", "to_id"} <= e.keys():
            raise SceneError(f"{where}: edge #{k} needs from_id, relation_type and to_id")
        a, rname, b = e["from_id"], e["relation_type"], e["to_id"]
        label = f"edge #{k} ({_short(a)} {_short(rname)} {_short(b)})"
        r = REL.get(rname.upper()) if isinstance(rname, str) else None
        if r is None:
            raise SceneError(f"{where}: {label} has unknown relation {_short(rname)}; "
                             f"known: {', '.join(RELATIONS)}")
        for end in (a, b):
            if not _is_id(end) or end not in class_name:
                raise SceneError(f"{where}: {label} points to missing node {_short(end)}")
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
        raise SceneError(f"{where}: node {i} <{node['class_name']}>: '{kind}' must be a list, "
                         f"got {_short(names)}")
    bits = 0
    for s in names:
        b = table.get(s.upper()) if isinstance(s, str) else None
        if b is None:
            raise SceneError(f"{where}: node {i} <{node['class_name']}> has unknown "
                             f"{kind[:-1] if kind == 'states' else 'property'} {_short(s)}")
        bits |= b
    return bits
