"""`e2wm bench plans`: how often MCTS plans succeed, how soon, how long they are, per planner.

Every activity (the library and its held-out set) is posed in every seeded procedural apartment
where it can be posed (its classes exist, and work is left on each goal object), planned with the
given number of simulations by each planner (rollouts: "uniform" or "goal"-aware, same seed, same
pairs), and re-executed. Per planner: the success rate over the posed goals; the median number of
simulations until the search first reached the goal (over the pairs it solved, and over the pairs
every planner solved, for a like-for-like ratio); the mean length of the successful plans against
the shortest successful path the search found; and successful plans per core-hour (each plan's
whole episode time: search, pruning, re-execution).
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import time

from e2wm.bench import report
from e2wm.collect.mcts import ROLLOUTS, MCTSConfig
from e2wm.collect.plans import plan_episode
from e2wm.collect.run import activity_hosts
from e2wm.errors import E2WMError
from e2wm.world.activities import ALL_ACTIVITIES, ActivityError


def _one(job):
    seed, name, simulations, rollout = job
    try:
        ep = plan_episode(f"procedural:{seed}", name, MCTSConfig(simulations=simulations, rollout=rollout),
                          seed)
    except ActivityError:
        return None
    st = ep.stats
    return {"activity": name, "seed": seed, "planner": rollout, "success": ep.success,
            "lines": len(ep.steps), "shortest_found": st["shortest_found"],
            "first_solution": st["first_solution"], "search_s": ep.timing["search_s"],
            "total_s": ep.timing["total_s"]}


def parse_planners(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in names if p not in ROLLOUTS]
    if not names or bad:
        raise E2WMError(f"--planners {text!r}: expected a comma-separated subset of {','.join(ROLLOUTS)}")
    return names


def run(scenes: int = 50, simulations: int = 2000, workers: int = 1, planners=("uniform", "goal"),
        activities=None, progress=None) -> dict:
    acts = list(ALL_ACTIVITIES if activities is None else activities)
    hosts = activity_hosts(acts, range(scenes))
    pairs = sorted((seed, a) for a, seeds in hosts.items() for seed in seeds)
    # Planners interleaved pair by pair, so a busy spell on the machine hits both alike.
    jobs = [(seed, a, simulations, p) for seed, a in pairs for p in planners]
    t0 = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for r in pool.imap(_one, jobs, chunksize=2):
            results.append(r)
            if progress is not None:
                progress(1)
    wall = time.perf_counter() - t0
    posed = [r for r in results if r is not None]
    solved_by = {}
    for r in posed:
        solved_by.setdefault((r["seed"], r["activity"]), set())
        if r["first_solution"]:
            solved_by[(r["seed"], r["activity"])].add(r["planner"])
    common = {k for k, v in solved_by.items() if len(v) == len(planners)}
    rows = {p: _row([r for r in posed if r["planner"] == p], common) for p in planners}
    out = {"bench": "plans", "scenes": scenes, "activities": len(acts), "simulations": simulations,
           "pairs": len(solved_by), "already_done": len(pairs) - len(solved_by),
           "solved_by_all": len(common), "workers": workers, "wall_s": round(wall, 1),
           "planners": rows}
    if {"uniform", "goal"} <= set(planners) and rows["goal"]["median_first_solution_common"]:
        out["first_solution_ratio"] = round(rows["uniform"]["median_first_solution_common"]
                                            / rows["goal"]["median_first_solution_common"], 2)
    return out


def _row(rs: list[dict], common: set) -> dict:
    good = [r for r in rs if r["success"]]
    firsts = [r["first_solution"] for r in rs if r["first_solution"]]
    firsts_common = [r["first_solution"] for r in rs if (r["seed"], r["activity"]) in common]
    failures: dict[str, int] = {}
    for r in rs:
        if not r["success"]:
            failures[r["activity"]] = failures.get(r["activity"], 0) + 1
    core_s = sum(r["total_s"] for r in rs)
    return {
        "posed": len(rs), "succeeded": len(good), "success_rate": round(len(good) / max(len(rs), 1), 4),
        "median_first_solution": statistics.median(firsts) if firsts else 0,
        "median_first_solution_common": statistics.median(firsts_common) if firsts_common else 0,
        "mean_plan_lines": round(statistics.mean(r["lines"] for r in good), 2) if good else 0.0,
        "mean_shortest_found": round(statistics.mean(r["shortest_found"] for r in good), 2) if good else 0.0,
        "plans_longer_than_shortest": sum(r["lines"] > r["shortest_found"] for r in good),
        "mean_search_s": round(statistics.mean(r["search_s"] for r in rs), 3) if rs else 0.0,
        "plans_per_core_hour": round(3600 * len(good) / core_s) if core_s else 0,
        "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def table(r: dict) -> str:
    names = list(r["planners"])
    rows = [("solved", lambda x: f"{x['succeeded']}/{x['posed']} = {100 * x['success_rate']:.1f}%"),
            ("median sims to 1st solution", lambda x: f"{x['median_first_solution']:g}"),
            (f"  on the {r['solved_by_all']} pairs all solved", lambda x: f"{x['median_first_solution_common']:g}"),
            ("mean plan lines", lambda x: f"{x['mean_plan_lines']}"),
            ("mean shortest found (lines)", lambda x: f"{x['mean_shortest_found']}"),
            ("plans longer than shortest found", lambda x: f"{x['plans_longer_than_shortest']}"),
            ("mean search s", lambda x: f"{x['mean_search_s']}"),
            ("successful plans per core-hour", lambda x: f"{x['plans_per_core_hour']:,}")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>18}" for n in names)]
    lines += [f"{k:<{width}}  " + "  ".join(f"{f(r['planners'][n]):>18}" for n in names) for k, f in rows]
    for n in names:
        fails = r["planners"][n]["failures"]
        if fails:
            lines.append(f"{n} misses: " + ", ".join(f"{a} {k}" for a, k in fails.items()))
    return "\n".join(lines)


def main(args) -> int:
    from e2wm.progress import progress
    planners = parse_planners(args.planners)
    with progress() as bar:
        task = bar.add_task("planning", total=None)
        r = run(args.scenes, args.simulations, args.workers, planners,
                progress=lambda k: bar.advance(task, k))
    print(table(r))
    ratio = f"; median sims to first solution, uniform/goal: {r['first_solution_ratio']}x" \
        if "first_solution_ratio" in r else ""
    return report(r, f"{r['activities']} activities over {r['scenes']} procedural apartments, "
                  f"{r['simulations']} simulations each: {r['pairs']} goals posed "
                  f"({r['already_done']} skipped: already done there){ratio}; {r['wall_s']} s on "
                  f"{r['workers']} worker(s)")
