"""`e2wm bench plans`: how often MCTS plans succeed, and how long they are, over the activity library.

Every activity is posed in every seeded procedural apartment where it can be posed (its classes
exist, and work is left on each goal object), planned with the given number of simulations, and re-executed; the
figures are the success rate over the posed goals and the mean length of the successful plans.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import time

from e2wm.bench import report
from e2wm.collect.mcts import MCTSConfig
from e2wm.collect.plans import plan_episode
from e2wm.collect.run import activity_hosts
from e2wm.world.activities import ACTIVITIES, ActivityError


def _one(job):
    seed, name, simulations = job
    try:
        ep = plan_episode(f"procedural:{seed}", name, MCTSConfig(simulations=simulations), seed)
    except ActivityError:
        return name, None, 0, 0.0
    return name, ep.success, len(ep.steps), ep.timing["search_s"]


def run(scenes: int = 50, simulations: int = 2000, workers: int = 1, progress=None) -> dict:
    hosts = activity_hosts(ACTIVITIES, range(scenes))
    jobs = sorted((seed, a, simulations) for a, seeds in hosts.items() for seed in seeds)
    t0 = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for r in pool.imap(_one, jobs, chunksize=4):
            results.append(r)
            if progress is not None:
                progress(1)
    wall = time.perf_counter() - t0
    posed = [r for r in results if r[1] is not None]
    good = [r for r in posed if r[1]]
    failures: dict[str, int] = {}
    for name, ok, _, _ in posed:
        if not ok:
            failures[name] = failures.get(name, 0) + 1
    return {
        "bench": "plans", "scenes": scenes, "activities": len(ACTIVITIES), "simulations": simulations,
        "posed": len(posed), "already_done": len(results) - len(posed), "succeeded": len(good),
        "success_rate": round(len(good) / max(len(posed), 1), 4),
        "mean_plan_lines": round(statistics.mean(r[2] for r in good), 2) if good else 0.0,
        "mean_search_s": round(statistics.mean(r[3] for r in posed), 3) if posed else 0.0,
        "plans_per_s": round(len(posed) / wall, 2), "workers": workers,
        "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def main(args) -> int:
    from e2wm.progress import progress
    with progress() as bar:
        task = bar.add_task("planning", total=None)
        r = run(args.scenes, args.simulations, args.workers, progress=lambda k: bar.advance(task, k))
    return report(r, f"{r['activities']} activities over {r['scenes']} procedural apartments, "
                  f"{r['simulations']} simulations each: {r['posed']} goals posed "
                  f"({r['already_done']} skipped: already done there)",
                  f"success {r['succeeded']}/{r['posed']} = {100 * r['success_rate']:.1f}%; mean plan "
                  f"{r['mean_plan_lines']} lines; mean search {r['mean_search_s']} s; "
                  f"{r['plans_per_s']} plans/s on {r['workers']} worker(s)")
