"""Invariants that hold after any sequence of steps, legal or not, for every agent."""
import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2wm.world import World
from e2wm.world.script import format_line
from e2wm.world.vocab import ACTION_ARITY, GRABBABLE, R_HOLDS_LH, R_HOLDS_RH, R_INSIDE, R_ON

_TINY = json.loads((Path(__file__).parent / "data" / "tiny_scene.json").read_text())
_TINY_TWO = copy.deepcopy(_TINY)
_TINY_TWO["nodes"].append({"id": 4, "class_name": "character", "category": "Characters",
                           "properties": [], "states": []})
_TINY_TWO["edges"].append({"from_id": 4, "relation_type": "INSIDE", "to_id": 1})

SCENES = {"tiny": _TINY, "tiny_two": _TINY_TWO}
try:
    from e2wm.world.procedural import generate_apartment
except ImportError:   # pragma: no cover - the generator is optional for these tests
    generate_apartment = None
if generate_apartment is not None:
    for _seed in (0, 1, 2):
        SCENES[f"procedural_{_seed}"] = generate_apartment(_seed, n_characters=2)

ACTIONS = sorted(ACTION_ARITY)
STEP = st.tuples(st.integers(0, 1 << 16), st.booleans(), st.integers(0, 1 << 16),
                 st.integers(0, 1 << 16), st.integers(0, 1 << 16))
STEPS = st.lists(STEP, max_size=40)
PROPS = settings(max_examples=60, deadline=None)


def _line(w: World, agent: int, step) -> str:
    _, legal_mode, a, b, c = step
    if legal_mode:
        legal = w.legal_actions(agent)
        if legal:
            return legal[a % len(legal)]
    action = ACTIONS[a % len(ACTIONS)]
    ids = w.scene.ids
    args = [ids[b % len(ids)], ids[c % len(ids)]][:ACTION_ARITY[action]]
    return format_line(action, [(w.scene.class_name[i], i) for i in args])


def _play(w: World, steps):
    for step in steps:
        agent = step[0] % len(w.agents)
        line = _line(w, agent, step)
        before = w.to_dict()
        r = w.step(line, agent)
        if not r.ok:
            assert r.message
            assert w.to_dict() == before, line
        yield line


def _check_invariants(w: World):
    rooms, props = w.scene.rooms, w.scene.props
    holders = {}
    for c in w.agents:
        assert len(w.out(c, R_HOLDS_RH)) <= 1 and len(w.out(c, R_HOLDS_LH)) <= 1
        held = w.held(c)
        assert len(held) <= 2
        for h in held:
            assert h not in holders, f"{h} held by {holders.get(h)} and {c}"
            holders[h] = c
            assert not w.out(h, R_ON), f"held {h} is ON {set(w.out(h, R_ON))}"
            assert w.out(h, R_INSIDE) <= rooms, f"held {h} is INSIDE {set(w.out(h, R_INSIDE))}"
    for n in w.scene.ids:
        if props[n] & GRABBABLE:
            assert len(w.out(n, R_INSIDE) & rooms) == 1, \
                f"{w.scene.node_label(n)} INSIDE rooms {set(w.out(n, R_INSIDE) & rooms)}"


@pytest.mark.parametrize("name", sorted(SCENES))
def test_initial_scenes_satisfy_the_invariants(name):
    _check_invariants(World.from_dict(SCENES[name]))


@pytest.mark.parametrize("name", sorted(SCENES))
@PROPS
@given(steps=STEPS)
def test_invariants_hold_after_any_steps(name, steps):
    w = World.from_dict(SCENES[name])
    for _ in _play(w, steps):
        _check_invariants(w)


@pytest.mark.parametrize("name", sorted(SCENES))
@PROPS
@given(steps=STEPS, split=st.integers(0, 40), more=STEPS)
def test_a_clone_is_independent_of_its_original(name, steps, split, more):
    w = World.from_dict(SCENES[name])
    split = min(split, len(steps))
    list(_play(w, steps[:split]))
    twin = w.clone()
    assert twin.to_dict() == w.to_dict()
    frozen = twin.to_dict()
    list(_play(w, steps[split:]))
    assert twin.to_dict() == frozen
    original = w.to_dict()
    list(_play(twin, more))
    assert w.to_dict() == original
    _check_invariants(twin)


@pytest.mark.parametrize("name", sorted(SCENES))
@PROPS
@given(steps=STEPS)
def test_replaying_the_successful_lines_gives_the_same_world(name, steps):
    """Failed steps change nothing, so the successful lines alone rebuild the same world."""
    w = World.from_dict(SCENES[name])
    done = []
    for step in steps:
        agent = step[0] % len(w.agents)
        line = _line(w, agent, step)
        if w.step(line, agent).ok:
            done.append((line, agent))
    again = World.from_dict(SCENES[name])
    for line, agent in done:
        assert again.step(line, agent).ok, line
    assert again.to_dict() == w.to_dict()


@pytest.mark.parametrize("name", ["tiny_two"] + [n for n in sorted(SCENES) if n.startswith("proc")][:1])
@PROPS
@given(ops=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 9), STEP), max_size=60))
def test_clone_trees_match_replays(name, ops):
    """Worlds cloned from worlds cloned from worlds, stepped in any order, each equal to a fresh
    replay of its own successful lines."""
    worlds = [(World.from_dict(SCENES[name]), [])]
    for pick, kind, step in ops:
        w, history = worlds[pick % len(worlds)]
        if kind == 0:
            worlds.append((w.clone(), list(history)))
            continue
        agent = step[0] % len(w.agents)
        line = _line(w, agent, step)
        if w.step(line, agent).ok:
            history.append((line, agent))
    for w, history in worlds:
        fresh = World.from_dict(SCENES[name])
        for line, agent in history:
            assert fresh.step(line, agent).ok, line
        assert fresh.to_dict() == w.to_dict()
        assert set(fresh.edges()) == set(w.edges())
        assert {i: fresh.grab_source(i) for i in fresh.scene.ids} == \
               {i: w.grab_source(i) for i in w.scene.ids}


@pytest.mark.parametrize("name", sorted(SCENES))
@PROPS
@given(steps=STEPS)
def test_a_passing_check_is_always_possible(name, steps):
    """`rules.possible` never rules out a one-argument action that some reached state allows."""
    from e2wm.world.rules import possible
    w = World.from_dict(SCENES[name])
    one_arg = [a for a in ACTIONS if ACTION_ARITY[a] == 1]
    for _ in _play(w, steps):
        for line in w.legal_actions(0, one_arg):
            action = line[1:line.index("]")].upper()
            node = int(line.rsplit("(", 1)[1].rstrip(")"))
            assert possible(action, w.scene, node), line
