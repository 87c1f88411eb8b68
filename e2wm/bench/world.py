"""`e2wm bench world`: e2wm's engine vs the official VirtualHome executor, same scene, same stream.

The stream is random valid household actions (Walk, Grab, Open, Close, SwitchOn/Off, PutBack,
PutIn), in episodes that reset to the initial graph, generated once and replayed by both engines.
(a) plain stepping: e2wm `step` vs the official `execute_one_step(in_place=True)`.
(b) MCTS-style clone + step: e2wm `clone()` then `step` vs the official `execute_one_step`
    in its default copy mode (what a tree search over the official executor does).
"""
from __future__ import annotations

import random
import statistics
import time

from e2wm.bench import needs_official, report
from e2wm.world.oracle import Oracle
from e2wm.world.world import World

STREAM_ACTIONS = ("WALK", "GRAB", "OPEN", "CLOSE", "SWITCHON", "SWITCHOFF", "PUTBACK", "PUTIN")


def make_stream(scene: dict, steps: int, seed: int, episode_len: int = 40) -> list[list[str]]:
    """Episodes of valid lines; an action kind is drawn first so Walk does not drown the rest."""
    rng, base = random.Random(seed), World.from_dict(scene)
    episodes, total = [], 0
    while total < steps:
        w, ep = base.clone(), []
        for _ in range(min(episode_len, steps - total)):
            by_kind: dict[str, list[str]] = {}
            for line in w.legal_actions(0, STREAM_ACTIONS):
                by_kind.setdefault(line[1:line.index("]")], []).append(line)
            kind = sorted(by_kind)[rng.randrange(len(by_kind))]
            line = by_kind[kind][rng.randrange(len(by_kind[kind]))]
            w.step(line)
            ep.append(line)
        episodes.append(ep)
        total += len(ep)
    return episodes


def _ours_plain(base: World, episodes) -> float:
    t = time.perf_counter()
    for ep in episodes:
        w = base.clone()
        step = w.step
        for line in ep:
            step(line)
    return time.perf_counter() - t


def _ours_clone_step(base: World, episodes) -> tuple[float, list[float]]:
    clone_ns, t = [], time.perf_counter()
    for ep in episodes:
        w = base.clone()
        for line in ep:
            t0 = time.perf_counter_ns()
            child = w.clone()
            clone_ns.append(time.perf_counter_ns() - t0)
            child.step(line)
            w = child
    return time.perf_counter() - t, clone_ns


def _official(scene: dict, episodes, in_place: bool) -> float:
    o = Oracle(scene)
    scripts = [[Oracle.script(line) for line in ep] for ep in episodes]   # parsing not timed
    executor, env = o.executors[0], o._env
    t = time.perf_counter()
    for ep in scripts:
        state = env.EnvironmentState(o.graph, {}, instance_selection=True)
        for s in ep:
            executor.info.messages.clear()
            ok, new = executor.execute_one_step(s, state, in_place=in_place)
            state = new
    return time.perf_counter() - t


def _official_copy_us(scene: dict, episodes) -> float:
    """Median cost of the official state copy (`change_state([])`) along the stream."""
    o = Oracle(scene)
    executor, env, samples = o.executors[0], o._env, []
    for ep in episodes:
        state = env.EnvironmentState(o.graph, {}, instance_selection=True)
        for line in ep:
            t0 = time.perf_counter_ns()
            state.change_state([])
            samples.append(time.perf_counter_ns() - t0)
            _, state = executor.execute_one_step(Oracle.script(line), state, in_place=True)
    return statistics.median(samples) / 1e3


def run(scene: dict, label: str, steps: int = 4000, seed: int = 0, repeats: int = 3) -> dict:
    episodes = make_stream(scene, steps, seed)
    n = sum(len(ep) for ep in episodes)
    base = World.from_dict(scene)
    _ours_plain(base, episodes)   # warm the per-scene line cache
    ours_plain = min(_ours_plain(base, episodes) for _ in range(repeats))
    runs = [_ours_clone_step(base, episodes) for _ in range(repeats)]
    ours_clone = min(r[0] for r in runs)
    clone_us = statistics.median(x for r in runs for x in r[1]) / 1e3
    off_plain = _official(scene, episodes, in_place=True)
    off_clone = _official(scene, episodes, in_place=False)
    return {
        "bench": "world", "scene": label, "steps": n,
        "e2wm_step_per_s": round(n / ours_plain), "official_step_per_s": round(n / off_plain),
        "ratio_step": round(off_plain / ours_plain, 1),
        "e2wm_clone_step_per_s": round(n / ours_clone),
        "official_clone_step_per_s": round(n / off_clone),
        "ratio_clone_step": round(off_clone / ours_clone, 1),
        "clone_us_median": round(clone_us, 2),
        "official_copy_us_median": round(_official_copy_us(scene, episodes), 1),
    }


def main(args) -> int:
    from e2wm.world.scenes import load_scene, robothow_programs
    needs_official("world")
    source = args.scene or f"robothow:{robothow_programs()[0].name}"
    r = run(load_scene(source), source, steps=args.steps, seed=args.seed)
    return report(r, f"scene {source}, {r['steps']} steps of random valid actions, same stream for both",
                  f"{'':<22}{'e2wm':>12}{'official':>12}{'ratio':>9}",
                  f"{'step (steps/s)':<22}{r['e2wm_step_per_s']:>12,}{r['official_step_per_s']:>12,}"
                  f"{r['ratio_step']:>8}x",
                  f"{'clone+step (steps/s)':<22}{r['e2wm_clone_step_per_s']:>12,}"
                  f"{r['official_clone_step_per_s']:>12,}{r['ratio_clone_step']:>8}x",
                  f"median clone: e2wm {r['clone_us_median']} us, official state copy "
                  f"{r['official_copy_us_median']} us")
