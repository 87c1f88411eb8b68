"""The UCT planner on the hand-made tiny scene, where the shortest plans are known."""
import random

import pytest

from e2wm.collect.mcts import (ActionSpace, MCTSConfig, WorldEnv, _Node, backup, plan_return, search,
                              step_reward)
from e2wm.errors import E2WMError
from e2wm.world.facts import Fact
from e2wm.world.world import World

# Tiny scene: kitchen (1) with fridge 10 (closed), table 11 holding mug 12 and juice 14;
# bedroom (2) with the character 3, couch 21 facing nothing, tv 22 (off), nightstand 23, book 24.
# The first planner step is always a walk to a room (E2WM's rule), which sets these optima.
OPTIMA = {
    "tv on": ((Fact.state(22, "ON"),), [22], 3),
    "hold mug and juice": ((Fact.holding(3, 12), Fact.holding(3, 14)), [12, 14], 4),
    "sit on the couch": ((Fact.edge(3, "ON", 21), Fact.state(3, "SITTING")), [21], 3),
    "mug in fridge": ((Fact.edge(12, "INSIDE", 10),), [12, 10], 5),
}


def _search(world, facts, objects, seed=0, **cfg):
    cfg = MCTSConfig(**{"simulations": 3000, "prune": False, **cfg})
    return search(WorldEnv(world.clone()), facts, ActionSpace(world.scene, objects, cfg, facts), cfg,
                  random.Random(seed))


@pytest.mark.parametrize("rollout", ["goal", "uniform"])
@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_finds_the_shortest_plan(tiny_scene, name, rollout):
    facts, objects, optimum = OPTIMA[name]
    w = World.from_dict(tiny_scene)
    r = _search(w, facts, objects, simulations=6000 if rollout == "uniform" else 1500, rollout=rollout)
    assert r.reached
    assert len(r.actions) == optimum, r.lines
    # the plan runs in a fresh world and reaches every goal fact
    fresh = World.from_dict(tiny_scene)
    assert all(fresh.step(line).ok for line in r.lines)
    assert all(f.holds(fresh) for f in facts)


def test_same_seed_same_plan_and_statistics(tiny_scene):
    w = World.from_dict(tiny_scene)
    facts, objects, _ = OPTIMA["mug in fridge"]
    a, b = (_search(w, facts, objects, seed=7, simulations=500) for _ in range(2))
    assert (a.lines, a.reward, a.stats) == (b.lines, b.reward, b.stats)


@pytest.mark.parametrize("rollout", ["goal", "uniform"])
def test_the_plan_is_the_shortest_successful_path_found(tiny_scene, rollout):
    """select=shortest returns the shortest successful simulated path; E2WM's best_reward need not
    (here a step *pays*, so the best-reward path is a long one)."""
    w = World.from_dict(tiny_scene)
    facts, objects, optimum = OPTIMA["mug in fridge"]
    short = _search(w, facts, objects, seed=1, simulations=400, rollout=rollout, reward_step=0.05)
    best = _search(w, facts, objects, seed=1, simulations=400, rollout=rollout, reward_step=0.05,
                   select="best_reward")
    assert short.reached and short.stats["first_solution"] > 0
    assert len(short.lines) == short.stats["shortest_found"] == optimum < len(best.lines)
    assert short.stats == best.stats   # the same search; only the pick differs
    fresh = World.from_dict(tiny_scene)
    assert all(fresh.step(line).ok for line in short.lines) and all(f.holds(fresh) for f in facts)


def test_patience_stops_once_no_shorter_plan_turns_up(tiny_scene):
    w = World.from_dict(tiny_scene)
    facts, objects, optimum = OPTIMA["tv on"]
    full = _search(w, facts, objects, simulations=2000)
    r = _search(w, facts, objects, simulations=2000, patience=100)
    assert r.reached and len(r.actions) == optimum == len(full.actions)
    assert r.stats["simulations"] < 2000 and full.stats["simulations"] == 2000
    # a search that never succeeds runs its whole budget
    never = _search(w, facts, objects, simulations=300, patience=10, max_depth=1)
    assert not never.reached and never.stats["simulations"] == 300


def test_first_step_walks_to_a_room(tiny_scene):
    w = World.from_dict(tiny_scene)
    space = ActionSpace(w.scene, [12, 22])
    first = space.legal(WorldEnv(w), first=True)
    assert first and all(a[0].startswith("[Walk]") and len(a) == 1 for a in first)
    assert {a[0] for a in first} == {"[Walk] <kitchen> (1)", "[Walk] <bedroom> (2)"}


def test_only_goal_objects_and_rooms_are_acted_on(tiny_scene):
    w = World.from_dict(tiny_scene)
    w.step("[Walk] <mug> (12)")
    legal = ActionSpace(w.scene, [12]).legal(WorldEnv(w))
    lines = [line for a in legal for line in a]
    assert "[Grab] <mug> (12)" in lines
    assert not any("juice" in line or "fridge" in line for line in lines)   # close, but not goal objects
    assert not any(line.startswith(("[Find]", "[Run]", "[Touch]")) for line in lines)


def test_macro_stand_up_before_walking(tiny_scene):
    w = World.from_dict(tiny_scene)
    for line in ("[Walk] <couch> (21)", "[Sit] <couch> (21)"):
        assert w.step(line).ok
    legal = ActionSpace(w.scene, [12, 21]).legal(WorldEnv(w))
    walks = [a for a in legal if any(line.startswith("[Walk]") for line in a)]
    assert walks and all(a[0] == "[StandUp]" and len(a) == 2 for a in walks)


def test_macro_open_the_container_before_using_what_is_inside(tiny_scene):
    w = World.from_dict(tiny_scene)
    for line in ("[Walk] <mug> (12)", "[Grab] <mug> (12)", "[Walk] <fridge> (10)", "[Open] <fridge> (10)",
                 "[PutIn] <mug> (12) <fridge> (10)", "[Close] <fridge> (10)", "[Walk] <bedroom> (2)"):
        assert w.step(line).ok, line
    space = ActionSpace(w.scene, [12])
    env = WorldEnv(w)
    # walking to the shut-in mug walks to its container instead
    assert ("[Walk] <fridge> (10)",) in space.legal(env)
    assert ("[Walk] <mug> (12)",) not in space.legal(env)
    w.step("[Walk] <fridge> (10)")
    assert ("[Open] <fridge> (10)", "[Grab] <mug> (12)") in space.legal(env)
    assert ("[Grab] <mug> (12)",) not in space.legal(env)


def test_legal_actions_always_execute(tiny_scene):
    """Every action the space offers runs, from many random states."""
    rng = random.Random(3)
    base = World.from_dict(tiny_scene)
    space = ActionSpace(base.scene, [10, 12, 14, 21, 22, 23, 24])
    for _ in range(30):
        w = base.clone()
        for depth in range(25):
            legal = space.legal(WorldEnv(w), first=depth == 0)
            for action in legal:
                trial = w.clone()
                assert all(trial.step(line).ok for line in action), action
            w_env = WorldEnv(w)
            for line in rng.choice(legal):
                assert w_env.step(line)


def test_reward_terms():
    cfg = MCTSConfig()
    full = 0b11
    assert step_reward(0b00, 0b01, 0b00, full, cfg) == pytest.approx(2 - 0.1)
    assert step_reward(0b01, 0b00, 0b01, full, cfg) == pytest.approx(-1.5 - 0.1)
    assert step_reward(0b01, 0b11, 0b01, full, cfg) == pytest.approx(2 - 0.1 + 5)
    # a fact redone after being undone pays nothing again: toggling cannot beat doing it once
    assert step_reward(0b00, 0b01, 0b01, full, cfg) == pytest.approx(-0.1)


def test_discounted_backup_is_gamma_to_the_t():
    root, n1, n2 = (_Node((), 0.0, False) for _ in range(3))
    backup([root, n1, n2], [1.0, 2.0, 4.0, 8.0], gamma=0.5)   # two tree steps, two rollout steps
    assert n2.w == pytest.approx(2 + 0.5 * 4 + 0.25 * 8)
    assert n1.w == pytest.approx(1 + 0.5 * 2 + 0.25 * 4 + 0.125 * 8)
    assert (root.n, n1.n, n2.n) == (1, 1, 1)


def test_most_visited_option(tiny_scene):
    w = World.from_dict(tiny_scene)
    facts, objects, optimum = OPTIMA["tv on"]
    r = _search(w, facts, objects, select="most_visited", simulations=3000)
    assert r.reached and len(r.actions) == optimum
    ret, reached = plan_return(WorldEnv(w), facts, r.actions, MCTSConfig())
    assert reached and ret == pytest.approx(r.reward)


@pytest.mark.parametrize("bad, field", [({"simulations": 0}, "simulations"),
                                         ({"discount": 1.5}, "discount"),
                                         ({"select": "best"}, "select"),
                                         ({"excluded": ("FLY",)}, "excluded"),
                                         ({"excluded": ("WALK",)}, "excluded"),
                                         ({"simulations": 10**12}, r"simulations=.*10000000\]"),
                                         ({"c_init": "x"}, "c_init='x'"),
                                         ({"reward_new": [1]}, "reward_new"),
                                         ({"reward_done": float("inf")}, "reward_done"),
                                         ({"discount": 0.0}, "discount"),
                                         ({"prune": "no"}, "prune"),
                                         ({"rollout": "greedy"}, "rollout"),
                                         ({"goal_bias": 1.5}, "goal_bias"),
                                         ({"patience": -1}, "patience")])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(E2WMError, match=field):
        MCTSConfig(**bad)


def test_config_dict_round_trip_and_unknown_key():
    cfg = MCTSConfig(simulations=10, excluded=("FIND",))
    assert MCTSConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(E2WMError, match="simulatons"):
        MCTSConfig.from_dict({"simulatons": 5})
