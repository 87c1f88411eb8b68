"""World: a scene's states and edges, the agents acting in it, and step / check / clone.

Edges live in two indexes, forward `node*8+relation -> set(targets)` and reverse
`node*8+relation -> set(sources)`, so no action scans the whole graph. A clone copies the index
dicts but shares their sets; each world copies a set the first time it changes it after a clone
(copy-on-write, tracked in `_own`), so a clone is a handful of dict copies and a step mutates in
place whatever it already owns.
"""
from __future__ import annotations

from dataclasses import dataclass

from e2wm.errors import AgentError
from e2wm.world.graph import Scene
from e2wm.world.script import ScriptLine, parse_line
from e2wm.world.vocab import (CLOSED, R_CLOSE, R_HOLDS_LH, R_HOLDS_RH, R_INSIDE, R_ON,
                              R_FACING, RELATIONS)

EMPTY: frozenset = frozenset()
# The engine's version, recorded in every episode and collection manifest. Bump it whenever a
# rule's preconditions or effects change: episodes made by another version may not replay.
ENGINE_VERSION = "e2wm-world/2"


@dataclass(frozen=True, slots=True)
class StepResult:
    ok: bool
    message: str = ""


OK = StepResult(True)


class World:
    __slots__ = ("scene", "_states", "_adj", "_radj", "_grab", "_own")

    def __init__(self, scene: Scene):
        self.scene = scene
        self._states: dict[int, int] = dict(scene.init_states)
        adj: dict[int, set] = {}
        radj: dict[int, set] = {}
        for a, r, b in scene.edges:
            adj.setdefault(a * 8 + r, set()).add(b)
            radj.setdefault(b * 8 + r, set()).add(a)
        self._adj, self._radj = adj, radj
        # Keys of `_adj` (k) and `_radj` (-k-1) whose sets this world alone holds. Starts empty, so
        # even the sets built here are copied before a first change (a clone may share them).
        self._own: set[int] = set()
        # Where each grabbed object came from, (support id, relation): the official executor_data,
        # shared by all agents; it drives PutObjBack and forbids grabbing an object twice.
        self._grab: dict[int, tuple[int, int]] = {}

    @classmethod
    def from_dict(cls, scene_json: dict, where: str = "scene") -> "World":
        return cls(Scene.from_dict(scene_json, where))

    # ---- public API -------------------------------------------------------------------------
    def step(self, line: str | ScriptLine, agent: int = 0) -> StepResult:
        """Execute one script line for `agent`; on failure nothing changes."""
        sc = self.scene
        rule, ids = sc.lines.get(line) or self._resolve(line)
        chars = sc.characters
        if not 0 <= agent < len(chars):
            self._char(agent)   # raises AgentError
        c = chars[agent]
        if rule is None:
            return StepResult(False, ids)
        msg = rule[0](self, c, *ids)
        if msg is not None:
            return StepResult(False, msg)
        rule[1](self, c, *ids)
        return OK

    def check(self, line: str | ScriptLine, agent: int = 0) -> bool:
        """Whether `line` would succeed now; no side effects."""
        rule, ids = self.scene.lines.get(line) or self._resolve(line)   # the planner's hot path
        chars = self.scene.characters
        if not 0 <= agent < len(chars):
            self._char(agent)   # raises AgentError
        return rule is not None and rule[0](self, chars[agent], *ids) is None

    def why_not(self, line: str | ScriptLine, agent: int = 0) -> str | None:
        """None when `line` would succeed now, else the reason."""
        rule, ids = self._resolve(line)
        c = self._char(agent)
        return ids if rule is None else rule[0](self, c, *ids)

    def legal_actions(self, agent: int = 0, actions=None) -> list[str]:
        """Script lines executable now by `agent` (optionally only these action keys)."""
        from e2wm.world.legal import legal_lines
        return legal_lines(self, self._char(agent), actions)

    def clone(self) -> "World":
        w = World.__new__(World)
        w.scene = self.scene
        w._states = self._states.copy()
        w._adj = self._adj.copy()
        w._radj = self._radj.copy()
        w._grab = self._grab.copy()
        w._own = set()
        self._own = set()   # the sets are shared now: both sides copy before changing one
        return w

    def to_dict(self) -> dict:
        """VirtualHome JSON of the current state; input order and fields kept where unchanged."""
        sc = self.scene
        nodes = [sc.node_dict(n["id"], self._states[n["id"]]) for n in sc.nodes]
        edges, base = [], set()
        for a, r, b in sc.edges:
            base.add((a, r, b))
            if b in self._adj.get(a * 8 + r, EMPTY):
                edges.append({"from_id": a, "relation_type": RELATIONS[r], "to_id": b})
        added = sorted((k >> 3, k & 7, b) for k, s in self._adj.items() for b in s
                       if (k >> 3, k & 7, b) not in base)
        edges += [{"from_id": a, "relation_type": RELATIONS[r], "to_id": b} for a, r, b in added]
        return {"nodes": nodes, "edges": edges}

    # ---- read access --------------------------------------------------------------------------
    @property
    def agents(self) -> tuple[int, ...]:
        """Character node ids; agent i is agents[i]."""
        return self.scene.characters

    def states(self, node: int) -> int:
        return self._states[node]

    def has_state(self, node: int, state_bit: int) -> bool:
        return bool(self._states[node] & state_bit)

    def out(self, a: int, r: int) -> frozenset:
        """Targets of `a --r--> x` (a snapshot)."""
        return frozenset(self._adj.get(a * 8 + r, EMPTY))

    def inn(self, b: int, r: int) -> frozenset:
        """Sources of `x --r--> b` (a snapshot)."""
        return frozenset(self._radj.get(b * 8 + r, EMPTY))

    # Live views for the rules: never keep one across a change.
    def _out(self, a: int, r: int):
        return self._adj.get(a * 8 + r, EMPTY)

    def _inn(self, b: int, r: int):
        return self._radj.get(b * 8 + r, EMPTY)

    def has_edge(self, a: int, r: int, b: int) -> bool:
        return b in self._adj.get(a * 8 + r, EMPTY)

    def edges(self):
        """Every edge as (from, relation, to)."""
        for k, s in self._adj.items():
            for b in s:
                yield k >> 3, k & 7, b

    def grab_source(self, obj: int) -> tuple[int, int] | None:
        return self._grab.get(obj)

    def room_of(self, n: int) -> int | None:
        """The room a node is in, as the official `_get_room_node` finds it."""
        rooms = self.scene.rooms
        if n in rooms:
            return n
        ins = self._adj.get(n * 8 + R_INSIDE, EMPTY)
        if len(ins) > 1:
            return min((x for x in ins if x in rooms), default=None)
        seen = set()
        while len(ins) == 1:
            (x,) = ins
            if x in rooms:
                return x
            if x in seen:      # an INSIDE cycle: no room
                return None
            seen.add(x)
            ins = self._adj.get(x * 8 + R_INSIDE, EMPTY)
            if len(ins) > 1:   # follow the lowest id where the official takes set order
                ins = frozenset((min(ins),))
        return None

    def held(self, c: int) -> frozenset:
        return frozenset(self._adj.get(c * 8 + R_HOLDS_RH, EMPTY)).union(
            self._adj.get(c * 8 + R_HOLDS_LH, EMPTY))

    def close_to(self, c: int, n: int) -> bool:
        """Character close to n, directly or one hop (close to / on something the character is close to)."""
        near = self._adj.get(c * 8 + R_CLOSE, EMPTY)
        if n in near:
            return True
        return (not near.isdisjoint(self._radj.get(n * 8 + R_CLOSE, EMPTY))
                or not near.isdisjoint(self._adj.get(n * 8 + R_ON, EMPTY)))

    def facing(self, c: int, n: int) -> bool:
        f = self._adj.get(c * 8 + R_FACING, EMPTY)
        return n in f or not f.isdisjoint(self._radj.get(n * 8 + R_FACING, EMPTY))

    def inside_closed(self, n: int) -> bool:
        """Inside a CLOSED container that is not a room."""
        rooms, st = self.scene.rooms, self._states
        return any(st[x] & CLOSED and x not in rooms for x in self._adj.get(n * 8 + R_INSIDE, EMPTY))

    def closed_container(self, n: int) -> int | None:
        """The lowest-id CLOSED non-room node that n is INSIDE, if any."""
        rooms, st = self.scene.rooms, self._states
        boxes = [x for x in self._adj.get(n * 8 + R_INSIDE, EMPTY) if st[x] & CLOSED and x not in rooms]
        return min(boxes) if boxes else None

    def free_hand(self, c: int) -> int | None:
        if not self._adj.get(c * 8 + R_HOLDS_RH):
            return R_HOLDS_RH
        if not self._adj.get(c * 8 + R_HOLDS_LH):
            return R_HOLDS_LH
        return None

    def holds(self, c: int, n: int) -> bool:
        return (n in self._adj.get(c * 8 + R_HOLDS_RH, EMPTY)
                or n in self._adj.get(c * 8 + R_HOLDS_LH, EMPTY))

    # ---- mutation (used by rules) ---------------------------------------------------------------
    def _add(self, a: int, r: int, b: int) -> None:
        k = a * 8 + r
        s = self._adj.get(k)
        if s is None or b not in s:
            own = self._own
            if k not in own:
                s = self._adj[k] = set(s) if s else set()
                own.add(k)
            s.add(b)
            k = b * 8 + r
            s = self._radj.get(k)
            if ~k not in own:
                s = self._radj[k] = set(s) if s else set()
                own.add(~k)
            s.add(a)

    def _add_both(self, a: int, r: int, b: int) -> None:
        self._add(a, r, b)
        self._add(b, r, a)

    def _del(self, a: int, r: int, b: int) -> None:
        k = a * 8 + r
        s = self._adj.get(k)
        if s and b in s:
            own = self._own
            if k not in own:
                s = self._adj[k] = set(s)
                own.add(k)
            s.discard(b)
            k = b * 8 + r
            s = self._radj[k]
            if ~k not in own:
                s = self._radj[k] = set(s)
                own.add(~k)
            s.discard(a)

    def _del_all(self, n: int, rels) -> None:
        """Remove every edge of the given relations from and to n."""
        adj, radj, own = self._adj, self._radj, self._own
        for r in rels:
            k = n * 8 + r
            out = adj.get(k)
            if out:
                adj[k] = EMPTY
                own.discard(k)
                for x in out:
                    kx = x * 8 + r
                    s = radj[kx]
                    if ~kx not in own:
                        s = radj[kx] = set(s)
                        own.add(~kx)
                    s.discard(n)
            inn = radj.get(k)
            if inn:
                radj[k] = EMPTY
                own.discard(~k)
                for x in inn:
                    kx = x * 8 + r
                    s = adj[kx]
                    if kx not in own:
                        s = adj[kx] = set(s)
                        own.add(kx)
                    s.discard(n)

    def _set_states(self, n: int, remove: int, add: int) -> None:
        self._states[n] = (self._states[n] & ~remove) | add

    # ---- internals ------------------------------------------------------------------------------
    def _char(self, agent: int) -> int:
        chars = self.scene.characters
        if not 0 <= agent < len(chars):
            raise AgentError(f"agent {agent}: this world has {len(chars)} character(s)")
        return chars[agent]

    def _resolve(self, line):
        """(rule, ids) for a line, or (None, reason) when it names nodes this scene lacks."""
        cache = self.scene.lines
        hit = cache.get(line)
        if hit is not None:
            return hit
        from e2wm.world.rules import RULES  # rules import this module
        sl = line if isinstance(line, ScriptLine) else parse_line(line)
        sc = self.scene
        res = (RULES[sl.action], sl.ids)
        for a in sl.args:
            cls = sc.class_name.get(a.id)
            if cls is None:
                res = (None, f"<{a.name}> ({a.id}) is not in the scene")
                break
            if cls != a.name:
                res = (None, f"node {a.id} is <{cls}>, not <{a.name}>")
                break
        if len(cache) > 200_000:   # bound memory on endless streams of distinct lines
            cache.clear()
        cache[line] = res
        return res
