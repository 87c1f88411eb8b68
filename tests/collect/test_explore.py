"""Random multi-agent exploration: replay, determinism, JSON round trip, moves, the mix, errors."""
import os
import random
import subprocess
import sys

import pytest

from e2wm.collect.episodes import Episode
from e2wm.collect.explore import (ACTION_KINDS, ExploreConfig, explore, explore_episode,
                                  explore_scene, format_episode, location, replay)
from e2wm.errors import E2WMError
from e2wm.world import World, parse_line
from e2wm.world.scenes import load_scene

REST_MIX = ExploreConfig().mix + (("rest", 1.0),)


@pytest.mark.parametrize("steps", [40, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replaying_the_log_reproduces_the_world(seed, steps):
    cfg = ExploreConfig(steps=steps, mix=REST_MIX)
    scene = explore_scene(f"procedural:{seed}", 3)
    w = World.from_dict(scene)
    log = explore(w, cfg, random.Random(f"{seed}:0"))
    assert len(log) == steps and all(s["ok"] for s in log)
    assert replay(scene, log).to_dict() == w.to_dict()
    assert explore_episode(f"procedural:{seed}", cfg, seed).steps == log


def test_replay_names_the_step_that_fails():
    scene = load_scene("procedural:0:3")
    ep = explore_episode("procedural:0", ExploreConfig(steps=100), 0)
    k = next(k for k, s in enumerate(ep.steps) if s["kind"] == "grab")
    bad = ep.steps[:k] + [dict(ep.steps[k], agent=(ep.steps[k]["agent"] + 1) % 3)]
    name = parse_line(ep.steps[k]["line"]).args[0].name
    with pytest.raises(E2WMError, match=rf"step {k} '\[Grab\] <{name}>"):
        replay(scene, bad)


def test_same_seed_and_unit_give_the_same_episode():
    cfg = ExploreConfig(steps=60)
    a, b = (explore_episode("procedural:3", cfg, 5, 0) for _ in range(2))
    assert a.content_json() == b.content_json() and a.key == b.key
    for seed, unit in ((5, 1), (6, 0)):
        other = explore_episode("procedural:3", cfg, seed, unit)
        assert other.key != a.key and other.steps != a.steps


def test_the_episode_does_not_depend_on_the_hash_seed():
    code = ("from e2wm.collect.explore import ExploreConfig, explore_episode; "
            "print(explore_episode('procedural:4', ExploreConfig(steps=80), 1, 2).content_hash())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": h}) for h in ("1", "2")]
    hashes = {p.communicate()[0].strip() for p in procs}
    assert hashes == {explore_episode("procedural:4", ExploreConfig(steps=80), 1, 2).content_hash()}


def test_json_round_trip_is_exact():
    ep = explore_episode("procedural:5", ExploreConfig(steps=100), 3, 1)
    assert ep.kind == "explore" and ep.agents == 3 and ep.final and ep.conditions
    back = Episode.from_json(ep.to_json())
    assert back == ep and back.to_json() == ep.to_json()


def test_moves_follow_each_object_and_carried_objects_change_room():
    carried = 0
    for seed in range(3):
        ep = explore_episode(f"procedural:{seed}", ExploreConfig(steps=200), seed)
        w = World.from_dict(explore_scene(f"procedural:{seed}", 3))
        sc = w.scene
        start = {n: location(w, n) for n in sc.ids if n not in sc.rooms and n not in sc.characters}
        now = dict(start)
        for s in ep.steps:
            c = w.agents[s["agent"]]
            held, here = w.held(c), w.room_of(c)
            target = parse_line(s["line"]).ids
            assert s["kind"] != "walk_room" or target[0] != here
            assert w.step(s["line"], s["agent"]).ok
            moves = {m["object"]: m for m in s["moves"]}
            for o, m in moves.items():
                assert m["from"] == now[o] != m["to"]
                now[o] = m["to"]
            if s["kind"].startswith("walk") and w.room_of(c) != here:
                for h in held:
                    carried += 1
                    assert moves[h]["from"] == {"room": here, "relation": "HELD", "target": c}
                    assert moves[h]["to"] == {"room": w.room_of(c), "relation": "HELD", "target": c}
        assert now == {n: location(w, n) for n in start}
        moved = {m["object"] for s in ep.steps for m in s["moves"]}
        assert ep.stats["objects_moved"] == len(moved)
        assert {n for n in start if now[n] != start[n]} <= moved
    assert carried > 0


def test_final_and_conditions_name_where_moved_objects_were():
    ep = explore_episode("procedural:1", ExploreConfig(steps=200), 1)
    first, last = {}, {}
    for m in (m for s in ep.steps for m in s["moves"]):
        first.setdefault(m["object"], m["from"])
        last[m["object"]] = m["to"]
    for facts, locs in ((ep.conditions, first), (ep.final, last)):
        for o, loc in locs.items():
            label = f"<{ep.names[str(o)]}> ({o})"
            assert f"{label} || INSIDE || <{ep.names[str(loc['room'])]}> ({loc['room']})" in facts
            t = loc["target"]
            if loc["relation"] == "HELD":
                assert f"<character> ({t}) || HOLDS || {label}" in facts
            elif loc["relation"]:
                assert f"{label} || {loc['relation']} || <{ep.names[str(t)]}> ({t})" in facts


def _kind_of_line(scene, line):
    sl = parse_line(line)
    if sl.action == "WALK":
        return "walk_room" if sl.ids[0] in scene.rooms else "walk_object"
    return next(k for k, actions in ACTION_KINDS.items() if sl.action in actions)


def test_all_agents_act_and_the_mix_decides_the_kinds():
    mix = tuple((k, 0.0 if k == "drop" else w) for k, w in REST_MIX)
    cfg = ExploreConfig(steps=60, mix=mix)
    seen = set()
    for seed in range(8):
        ep = explore_episode(f"procedural:{seed}", cfg, seed)
        scene = World.from_dict(explore_scene(f"procedural:{seed}", 3)).scene
        assert {s["agent"] for s in ep.steps} == {0, 1, 2}
        for s in ep.steps:
            assert _kind_of_line(scene, s["line"]) == s["kind"]
        seen |= {s["kind"] for s in ep.steps}
    assert seen == {k for k, w in mix if w > 0}


def test_a_world_where_nobody_can_act_stops_the_exploration():
    w = World.from_dict(load_scene("procedural:0:3"))
    before = w.to_dict()
    cfg = ExploreConfig(mix=(("grab", 1.0), ("walk_room", 0.0)))
    assert explore(w, cfg, random.Random(0)) == []
    assert w.to_dict() == before


@pytest.mark.parametrize("kwargs, message", [
    ({"mix": (("fly", 1.0),)}, r"unknown kind 'fly'"),
    ({"mix": (("grab", -1.0),)}, r"weight of 'grab'.*-1\.0"),
    ({"mix": (("grab", 0.0),)}, r"weight > 0"),
    ({"mix": (("grab", 1.0), ("grab", 2.0))}, r"twice"),
    ({"agents": 0}, r"agents=0: must be in \[1, 16\]"),
    ({"agents": 17}, r"agents=17: must be in \[1, 16\]"),
    ({"steps": -3}, r"steps=-3: must be in \[1, 100000\]"),
    ({"steps": 10**9}, r"steps=1000000000: must be in \[1, 100000\]"),
    ({"mix": (("grab", 1e300),)}, r"weight of 'grab'"),
])
def test_config_errors_name_the_problem(kwargs, message):
    with pytest.raises(E2WMError, match=message):
        ExploreConfig(**kwargs)


def test_too_few_characters_is_an_error():
    with pytest.raises(E2WMError, match=r"'procedural:2:2'.*3 agents need 3 characters.*has 2"):
        explore_episode("procedural:2:2", ExploreConfig(), 0)
    with pytest.raises(E2WMError, match=r"4 agents need 4 characters.*has 3"):
        explore(World.from_dict(load_scene("procedural:2:3")), ExploreConfig(agents=4),
                random.Random(0))


def test_a_procedural_source_gets_one_character_per_agent():
    ep = explore_episode("procedural:2", ExploreConfig(agents=2, steps=30), 0)
    chars = World.from_dict(load_scene("procedural:2:2")).agents
    assert sorted(int(i) for i, c in ep.names.items() if c == "character") == list(chars)
    assert {s["agent"] for s in ep.steps} == {0, 1}


def test_format_episode_shows_steps_moves_and_end_state():
    ep = explore_episode("procedural:1", ExploreConfig(steps=120), 1)
    text = format_episode(ep)
    chars = World.from_dict(explore_scene("procedural:1", 3)).agents
    assert ep.key in text and "procedural:1" in text
    for k, s in enumerate(ep.steps, 1):
        who = f"agent {s['agent']} (<character> ({chars[s['agent']]}))"
        assert f"{k:3d}. {who}: {s['line']}\n" in text
    for m in (m for s in ep.steps for m in s["moves"]):
        label = f"<{ep.names[str(m['object'])]}> ({m['object']}): "
        to_room = f"<{ep.names[str(m['to']['room'])]}> ({m['to']['room']})"
        assert any(line.strip().startswith(label) and line.endswith(to_room)
                   for line in text.splitlines())
    end = text.split("where moved objects ended up:\n")[1]
    assert end.splitlines() == [f"  {f}" for f in ep.final]
