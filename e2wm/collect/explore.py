"""Random multi-agent exploration: N agents take random actions in one world, and a step log says
who did what and which objects moved where.

Each step draws the acting agent uniformly, then an action kind by the mix weights among the kinds
with at least one legal line for that agent now, then one of those lines uniformly. When the drawn
agent has no legal line in any kind, the other agents are tried in a random order; when no agent
has one, the world can no longer change, so exploration stops early (the log is shorter than
`config.steps`). Every logged line is therefore legal and ok.

A step log entry is `{"agent": i, "kind": kind, "line": str, "ok": True, "moves": [...], "room": id}`
(room: where the agent is after the step); a move is
`{"object": id, "from": loc, "to": loc}` and a location is `{"room": id | None, "relation": "ON" |
"INSIDE" | "HELD" | None, "target": id | None}` (HELD: the holding character; ON / INSIDE: the
non-room thing it is on / in; None: it is only in a room). An object carried by a walking agent
changes room: the object-path signal. Put targets are furniture (non-grabbable) with SURFACES for
PutBack or CONTAINERS for PutIn, so objects end up on receptacles a story can count.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from functools import lru_cache

from e2wm.collect.episodes import Episode, episode_key
from e2wm.config import check_ranges
from e2wm.errors import E2WMError
from e2wm.world.facts import Fact
from e2wm.world.scenes import load_scene
from e2wm.world.script import parse_line
from e2wm.world.vocab import (BODY_PART, CONTAINERS, GRABBABLE, R_HOLDS_LH, R_HOLDS_RH, R_INSIDE,
                              R_ON, SURFACES)
from e2wm.world.world import ENGINE_VERSION, World

ACTION_KINDS: dict[str, tuple[str, ...]] = {
    "walk_room": ("WALK",),          # to another room
    "walk_object": ("WALK",),        # to furniture or an object nobody holds
    "grab": ("GRAB",),
    "put": ("PUTBACK", "PUTIN"),
    "open_close": ("OPEN", "CLOSE"),
    "switch": ("SWITCHON", "SWITCHOFF"),
    "drop": ("DROP",),
    "rest": ("SIT", "LIE", "STANDUP"),   # a sitting or lying agent cannot walk until it stands up
}
DEFAULT_MIX = (("walk_room", 3.0), ("walk_object", 3.0), ("grab", 2.0), ("put", 2.0),
               ("open_close", 1.0), ("switch", 1.0), ("drop", 0.5))
_PUT_TARGET = {"PUTBACK": SURFACES, "PUTIN": CONTAINERS}
_parse = lru_cache(maxsize=1 << 16)(parse_line)
MAX_AGENTS = 16          # characters in one apartment
MAX_WEIGHT = 1e6


@dataclass(frozen=True)
class ExploreConfig:
    # Ranges (checked on construction) stop a typo from exhausting memory or time.
    agents: int = field(default=3, metadata={"range": (1, MAX_AGENTS)})
    steps: int = field(default=28, metadata={"range": (1, 100_000)})
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX   # (kind, weight); weight 0 disables a kind
    # > 0: the episode draws this many receptacles at the start, and puts go only onto or into them
    # (walks to other furniture are left out too), so several objects gather in one place: the
    # counting stories. 0: any receptacle.
    receptacles: int = field(default=0, metadata={"range": (0, 1000)})

    def __post_init__(self):
        check_ranges(self)
        try:
            mix = tuple((k, w) for k, w in self.mix)
        except (TypeError, ValueError):
            raise E2WMError(f"mix must be (kind, weight) pairs, "
                            f"got {self.mix!r}") from None
        for k, w in mix:
            if not isinstance(k, str) or k not in ACTION_KINDS:
                raise E2WMError(f"mix has unknown kind {k!r}; "
                                f"known: {', '.join(ACTION_KINDS)}")
            if (not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w)
                    or not 0 <= w <= MAX_WEIGHT):
                raise E2WMError(f"mix weight of {k!r} must be a number in [0, {MAX_WEIGHT:g}], "
                                f"got {w!r}")
        kinds = [k for k, _ in mix]
        if len(set(kinds)) != len(kinds):
            raise E2WMError(f"mix names a kind twice: {kinds}")
        if not any(w > 0 for _, w in mix):
            raise E2WMError(f"mix needs a kind with weight > 0, got {mix!r}")
        object.__setattr__(self, "mix", tuple((k, float(w)) for k, w in mix))

    def to_dict(self) -> dict:
        return {"agents": self.agents, "steps": self.steps, "mix": [list(p) for p in self.mix],
                "receptacles": self.receptacles}


# The single-agent counting stories: one person tidying a few places (E2WM's counting stories run
# about 100 words); grabs and puts dominate so that the places gather 0-4 items.
STORY = ExploreConfig(agents=1, steps=24, receptacles=2,
                      mix=(("walk_room", 0.5), ("walk_object", 3.0), ("grab", 4.0), ("put", 6.0),
                           ("open_close", 0.5), ("switch", 0.3), ("drop", 0.3)))


def location(w: World, n: int) -> dict:
    """Where node n is: its room, and what holds it or what non-room thing it is on / in."""
    rel = target = None
    holders = w.inn(n, R_HOLDS_RH) | w.inn(n, R_HOLDS_LH)
    if holders:
        rel, target = "HELD", min(holders)
    else:
        for r, name in ((R_ON, "ON"), (R_INSIDE, "INSIDE")):
            xs = [x for x in w.out(n, r) if x not in w.scene.rooms]
            if xs:
                rel, target = name, min(xs)
                break
    return {"room": w.room_of(n), "relation": rel, "target": target}


def explore(world: World, config: ExploreConfig, rng: random.Random) -> list[dict]:
    """Run the exploration on `world` (mutated) and return its step log."""
    _need_characters(world, config.agents, "explore")
    kinds = [(k, w) for k, w in config.mix if w > 0]
    actions = sorted({a for k, _ in kinds for a in ACTION_KINDS[k]})
    kind_of = {a: k for k, _ in kinds for a in ACTION_KINDS[k] if a != "WALK"}
    targets = _receptacles(world, config.receptacles, rng)
    log = []
    for _ in range(config.steps):
        for agent in rng.sample(range(config.agents), config.agents):
            options = _options(world, agent, kinds, actions, kind_of, targets)
            if options:
                break
        else:
            break   # nobody can act: the world is frozen
        kind = rng.choices(list(options), weights=[w for k, w in kinds if k in options])[0]
        line = rng.choice(options[kind])
        moves = step_moves(world, agent, line)
        log.append({"agent": agent, "kind": kind, "line": line, "ok": True, "moves": moves,
                    "room": world.room_of(world.agents[agent])})
    return log


def _receptacles(w: World, k: int, rng: random.Random) -> frozenset | None:
    """`k` receptacles (furniture with surfaces or room inside) drawn for the episode, or None."""
    if not k:
        return None
    sc = w.scene
    pool = sorted(n for n in sc.class_name if n not in sc.rooms and sc.category[n] == "Furniture"
                  and sc.props[n] & (SURFACES | CONTAINERS) and not sc.props[n] & GRABBABLE)
    return frozenset(rng.sample(pool, min(k, len(pool))))


def _options(w: World, agent: int, kinds, actions, kind_of, targets=None) -> dict[str, list[str]]:
    """Kind -> its legal lines for `agent` now (sorted), for the kinds that have any. `targets`
    (None: any) are the only furniture to put things on or in; an agent carrying something walks
    only to them, one with empty hands only to things it could pick up."""
    sc, c = w.scene, w.agents[agent]
    held = set().union(*(w.held(x) for x in w.agents))
    carrying = bool(w.held(c))
    here = w.room_of(c)
    by_kind: dict[str, list[str]] = {}
    for line in w.legal_actions(agent, actions):
        sl = _parse(line)
        ids = sl.ids
        if sl.action == "WALK":
            n = ids[0]
            if n in sc.rooms:
                # Tidying (targets given), a carrying agent heads for a target, not another room.
                kind = "walk_room" if n != here and not (targets is not None and carrying) else None
            elif (sc.category[n] in ("Characters", "Doors") or sc.props[n] & BODY_PART or n in held
                  or (targets is not None and (n in targets) != (carrying or not sc.props[n] & GRABBABLE))):
                kind = None
            else:
                kind = "walk_object"
        elif sl.action in _PUT_TARGET:
            p = sc.props[ids[1]]
            kind = ("put" if p & _PUT_TARGET[sl.action] and not p & GRABBABLE
                    and (targets is None or ids[1] in targets) else None)
        else:
            kind = kind_of[sl.action]
        if kind is not None:
            by_kind.setdefault(kind, []).append(line)
    return {k: sorted(by_kind[k]) for k, _ in kinds if k in by_kind}


def step_moves(w: World, agent: int, line: str) -> list[dict]:
    """Execute a legal line; the moves it caused. Only the agent's held objects, the arguments and
    what is on or in an argument can move (a grab takes what is on the grabbed thing off it)."""
    sc = w.scene
    args = set(_parse(line).ids) - sc.rooms
    on_args = (w.inn(a, r) for a in args for r in (R_ON, R_INSIDE))
    cands = sorted(w.held(w.agents[agent]).union(args, *on_args) - set(sc.characters))
    before = [location(w, o) for o in cands]
    res = w.step(line, agent)
    if not res.ok:   # a legal line always runs; failing here means legal_actions and step disagree
        raise E2WMError(f"explore: legal line {line!r} failed for agent {agent}: {res.message}")
    moves = []
    for o, b in zip(cands, before):
        a = location(w, o)
        if a != b:
            moves.append({"object": o, "from": b, "to": a})
    return moves


def replay(scene_json: dict, steps: list[dict]) -> World:
    """Re-execute a step log on a fresh world built from `scene_json`."""
    w = World.from_dict(scene_json)
    for k, s in enumerate(steps):
        res = w.step(s["line"], s["agent"])
        if s["ok"] and not res.ok:
            raise E2WMError(f"replay: step {k} {s['line']!r} (agent {s['agent']}) failed: "
                            f"{res.message}")
    return w


def explore_scene(scene: str, agents: int) -> dict:
    """The scene dict an exploration of `scene` runs in.

    A `procedural:SEED` source without a character count gets `agents` characters
    (`procedural:SEED:AGENTS`); any other source is loaded as it is.
    """
    kind, _, rest = scene.partition(":")
    if kind == "procedural" and ":" not in rest:
        scene = f"procedural:{rest or 0}:{agents}"
    return load_scene(scene)


def explore_episode(scene: str, config: ExploreConfig, seed: int, unit: int = 0) -> Episode:
    """One exploration episode of `scene` (a source string, loaded by `explore_scene`); everything
    but `timing` is a pure function of the arguments."""
    t0 = time.perf_counter()
    key = episode_key({**config.to_dict(), "kind": "explore"}, scene, seed, unit)
    w = World.from_dict(explore_scene(scene, config.agents), scene)
    _need_characters(w, config.agents, f"scene {scene!r}")
    start = w.clone()
    # A str seed is hashed with SHA-512, the same in every process.
    steps = explore(w, config, random.Random(f"{seed}:{unit}"))
    sc = w.scene
    moves = [m for s in steps for m in s["moves"]]
    moved = {m["object"] for m in moves}
    named = moved.union(w.agents[:config.agents], *(_parse(s["line"]).ids for s in steps),
                        (s["room"] for s in steps if s["room"] is not None),
                        (x for m in moves for loc in (m["from"], m["to"])
                         for x in (loc["room"], loc["target"]) if x is not None))
    return Episode(
        key=key, kind="explore", scene=scene, seed=seed, unit=unit, agents=config.agents,
        engine=ENGINE_VERSION,
        conditions=sorted(t for o in moved for t in _facts(sc, o, location(start, o))),
        names={str(i): sc.class_name[i] for i in sorted(named)},
        steps=steps,
        final=sorted(t for o in moved for t in _facts(sc, o, location(w, o))),
        stats={"steps": len(steps), "moves": len(moves), "objects_moved": len(moved),
               "room_changes": sum(m["from"]["room"] != m["to"]["room"] for m in moves)},
        timing={"wall_s": round(time.perf_counter() - t0, 6)},
    )


def _facts(sc, o: int, loc: dict) -> list[str]:
    """Fact texts of a location: what holds the object or what it is on / in, and its room."""
    out = []
    if loc["relation"] == "HELD":
        out.append(Fact.holding(loc["target"], o).text(sc))
    elif loc["relation"] is not None:
        out.append(Fact.edge(o, loc["relation"], loc["target"]).text(sc))
    if loc["room"] is not None:
        out.append(Fact.edge(o, "INSIDE", loc["room"]).text(sc))
    return out


def _need_characters(w: World, agents: int, where: str) -> None:
    if len(w.agents) < agents:
        raise E2WMError(f"{where}: {agents} agents need {agents} characters, "
                        f"the world has {len(w.agents)}")


def format_episode(ep: Episode) -> str:
    """A readable text of an exploration episode: header, numbered steps with moves, end state."""
    def label(i):
        return f"<{ep.names[str(i)]}> ({i})"

    def room(loc):
        return label(loc["room"]) if loc["room"] is not None else "no room"

    def where(loc):
        rel = loc["relation"]
        if rel is None:
            return room(loc)
        how = "held by" if rel == "HELD" else rel.lower()
        return f"{how} {label(loc['target'])} in {room(loc)}"

    # The acting characters are the lowest character ids, and every one of them is in `names`.
    chars = sorted(int(i) for i, c in ep.names.items() if c == "character")[:ep.agents]
    st = ep.stats
    out = [f"explore episode {ep.key}: scene {ep.scene}, seed {ep.seed}, unit {ep.unit}",
           f"agents: {', '.join(f'{i} = {label(c)}' for i, c in enumerate(chars))}",
           f"{st['steps']} steps, {st['moves']} moves of {st['objects_moved']} objects, "
           f"{st['room_changes']} room changes"]
    for k, s in enumerate(ep.steps, 1):
        out.append(f"{k:3d}. agent {s['agent']} ({label(chars[s['agent']])}): {s['line']}")
        for m in s["moves"]:
            a, b = m["from"], m["to"]
            same_spot = (a["relation"], a["target"]) == (b["relation"], b["target"])
            change = (f"{room(a)} -> {room(b)}" if same_spot
                      else f"{where(a)} -> {where(b)}")
            out.append(f"       {label(m['object'])}: {change}")
    out.append("where moved objects ended up:")
    out += [f"  {f}" for f in ep.final] or ["  (no object moved)"]
    return "\n".join(out)
