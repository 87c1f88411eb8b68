"""Goal-directed plan episodes: instantiate a goal, search with MCTS, re-execute, record.

A plan is marked successful only after it is run again, line by line, in a fresh copy of the
start world and every goal fact holds at the end; the search's own bookkeeping is not trusted.
"""
from __future__ import annotations

import random
import time
from functools import lru_cache

from e2wm.collect.episodes import Episode, episode_key
from e2wm.collect.mcts import ActionSpace, MCTSConfig, WorldEnv, search, step_reward
from e2wm.errors import E2WMError, SceneError
from e2wm.world.activities import Goal, get_activity, goal_from_program, initial_conditions
from e2wm.world.graph import Scene
from e2wm.world.legal import line_text
from e2wm.world.scenes import load_scene, robothow_program
from e2wm.world.script import parse_line
from e2wm.world.world import ENGINE_VERSION, World


def execute_plan(world: World, goal: Goal, actions, config: MCTSConfig):
    """Run a plan in a copy of `world`: (steps, reward, success); stops at the first failing line."""
    w = world.clone()
    env = WorldEnv(w, goal.agent)
    full = (1 << len(goal.facts)) - 1
    truth = ever = env.truth(goal.facts)
    steps, total, ok = [], 0.0, True
    for action in actions:
        for line in action:
            r = w.step(line, goal.agent)
            now = env.truth(goal.facts)
            steps.append({"agent": goal.agent, "line": line, "ok": r.ok, "message": r.message,
                          "satisfied": now.bit_count()})
            if not r.ok:
                ok = False
                break
        if not ok:
            break
        total += step_reward(truth, now, ever, full, config)
        truth, ever = now, ever | now
    return steps, round(total, 6), ok and truth == full


def prune_plan(world: World, goal: Goal, actions, config: MCTSConfig) -> list:
    """Drop, last first, each step whose removal still leaves a successful plan.

    The first step stays: it is the walk to a room that E2WM's plans (and the data built from
    them) start with.
    """
    kept = list(actions)
    for i in range(len(kept) - 1, 0, -1):
        trial = kept[:i] + kept[i + 1:]
        if execute_plan(world, goal, trial, config)[2]:
            kept = trial
    return kept


def tidy_plan(world: World, goal: Goal, actions, config: MCTSConfig) -> list:
    """Make a successful plan read as a person would do it, each change re-checked in the world.

    A walk to an object that the next step does not act on (the shirt lying on the couch, walked
    to only to be close to the couch) becomes a walk to what the next step acts on. The opening
    room walk goes to the room of the first object the plan works on, or is dropped when the
    agent already stands there: E2WM's plans open "Walk to dining room. Walk to microwave.".
    """
    sc = world.scene
    kept = list(actions)
    for i in range(1, len(kept) - 1):
        walk = _walk_target(sc, kept[i])
        nxt = _acted_on(sc, kept[i + 1])
        if walk is None or walk in sc.rooms or nxt is None or walk in _named(kept[i + 1]):
            continue
        trial = kept[:i] + [_rewalk(sc, kept[i], nxt)] + kept[i + 1:]
        if execute_plan(world, goal, trial, config)[2]:
            kept = trial
    first = _walk_target(sc, kept[0]) if kept else None
    target = next((n for a in kept[1:] if (n := _acted_on(sc, a)) is not None), None)
    if first not in sc.rooms or target is None:
        return kept
    room = world.room_of(target)
    here = world.room_of(world.agents[goal.agent])
    trials = [kept[1:]] if room == here else [[_rewalk(sc, kept[0], room)] + kept[1:], kept[1:]]
    for trial in trials:
        if room is not None and trial != kept and execute_plan(world, goal, trial, config)[2]:
            return trial
    return kept


def _named(action) -> set[int]:
    return {i for line in action for i in parse_line(line).ids}


def _walk_target(sc, action) -> int | None:
    sl = parse_line(action[-1])
    return sl.ids[0] if sl.action == "WALK" else None


def _acted_on(sc, action) -> int | None:
    """The first non-room object an action names (its walk target or its verb's object)."""
    return next((i for line in action for i in parse_line(line).ids if i not in sc.rooms), None)


def _rewalk(sc, action, target: int) -> tuple[str, ...]:
    """The action with its final walk line sent to `target` instead (a StandUp before it stays)."""
    return (*action[:-1], line_text(sc, "WALK", (target,)))


def make_goal(world: World, scene: str, activity: str | None, rng: random.Random) -> Goal:
    """The goal of a plan episode: a library activity bound in this world, or a RobotHow program's."""
    if activity:
        return get_activity(activity).instantiate(world, rng, agent=0)
    if scene.startswith("robothow:"):
        return goal_from_program(robothow_program(scene.partition(":")[2]))
    raise E2WMError(f"scene {scene!r}: name an activity (only RobotHow scenes carry their own goal)")


@lru_cache(maxsize=32)
def _scene(source: str) -> Scene:
    """Parsed scenes, kept per process: a worker reuses them (and their line caches) across units."""
    return Scene.from_dict(load_scene(source), source)


def plan_episode(scene: str, activity: str | None, config: MCTSConfig, seed: int, unit: int = 0,
                 progress=None) -> Episode:
    t0 = time.perf_counter()
    key = episode_key({"kind": "plan", "activity": activity, "mcts": config.to_dict()}, scene, seed, unit)
    rng = random.Random(f"{seed}:{unit}")
    world = World(_scene(scene))
    if not world.scene.characters:
        raise SceneError(f"{scene}: no character node (class_name 'character') to plan for")
    goal = make_goal(world, scene, activity, rng)
    space = ActionSpace(world.scene, goal.objects, config, goal.facts)
    result = search(WorldEnv(world.clone(), goal.agent), goal.facts, space, config, rng, progress)
    actions = result.actions
    found = execute_plan(world, goal, actions, config)[2]
    if found and config.prune:
        actions = prune_plan(world, goal, tidy_plan(world, goal, prune_plan(world, goal, actions, config),
                                                    config), config)
    steps, reward, success = execute_plan(world, goal, actions, config)
    sc = world.scene
    conditions = initial_conditions(world, goal.objects)
    named = {n for f in (*goal.facts, *conditions) for n in f.nodes()}
    named |= {i for s in steps for i in parse_line(s["line"]).ids}
    stats = dict(result.stats, search_reward=result.reward, search_steps=len(result.actions),
                 pruned_steps=len(result.actions) - len(actions))
    return Episode(
        key=key, kind="plan", scene=scene, seed=seed, unit=unit, agents=1, engine=ENGINE_VERSION,
        activity=goal.activity, goals=[f.text(sc) for f in goal.facts],
        conditions=[f.text(sc) for f in conditions],
        names={str(i): sc.class_name[i] for i in sorted(named)},
        steps=steps, reward=reward, success=success, stats=stats,
        timing={"search_s": round(result.wall_s, 4), "total_s": round(time.perf_counter() - t0, 4),
                "sims_per_s": round(result.stats["simulations"] / max(result.wall_s, 1e-9), 1)})


def format_plan_episode(ep: Episode) -> str:
    out = [f"Plan episode {ep.key}: scene {ep.scene}, seed {ep.seed}, unit {ep.unit}",
           f"Activity: {ep.activity}", "Goal facts:"]
    out += [f"  {g}" for g in ep.goals]
    if ep.conditions:
        out.append("Initial conditions of the goal objects:")
        out += [f"  {c}" for c in ep.conditions]
    out.append(f"Plan ({len(ep.steps)} lines):")
    for k, s in enumerate(ep.steps, 1):
        status = f"goal facts {s['satisfied']}/{len(ep.goals)}" if s["ok"] else f"FAILED: {s['message']}"
        out.append(f"  {k:2d}. {s['line']:<56} {status}")
    st = ep.stats
    out.append(f"{'SUCCESS' if ep.success else 'NOT REACHED'}: reward {ep.reward}; search: "
               f"{st['simulations']} simulations, {st['nodes']} tree nodes, "
               f"{st['pruned_steps']} needless steps pruned, {ep.timing.get('search_s', 0)} s")
    return "\n".join(out)
