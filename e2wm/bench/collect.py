"""`e2wm bench collect`: collection throughput by worker count, same job, one process.

Each worker count runs the same plan-only job into a fresh directory on its own private Ray
instance; the rate is units per second of the work loop (actors already started), so Ray start-up
is not counted. Speedup and efficiency compare the last count with the first. Plans per core-hour
(the collection's figure of merit: what a cluster buys with its CPU) divide each rate by the cores
its actors hold (one each).
"""
from __future__ import annotations

import tempfile

from e2wm.bench import report
from e2wm.collect.config import CollectConfig
from e2wm.collect.run import collect
from e2wm.errors import E2WMError


def run(workers=(1, 2), units: int = 100, simulations: int = 2000, progress=None) -> dict:
    rows = {}
    for n in workers:
        with tempfile.TemporaryDirectory(prefix="e2wm-bench-collect-") as out:
            cfg = CollectConfig.from_dict({"out": out, "plans": units, "explorations": 0, "scenes": 30,
                                           "mcts": {"simulations": simulations}, "workers": n,
                                           "shard_size": 10})
            stats = collect(cfg, log=lambda *a: None)
        rows[n] = {"units_per_s": stats["units_per_s"], "run_s": stats["run_s"],
                   "content_hash": stats["content_hash"]}
        if progress is not None:
            progress(n, rows[n])
    first, last = workers[0], workers[-1]
    speedup = rows[last]["units_per_s"] / rows[first]["units_per_s"]
    return {"bench": "collect", "units": units, "simulations": simulations,
            "workers": list(workers), "units_per_s": {str(n): rows[n]["units_per_s"] for n in workers},
            "plans_per_core_hour": {str(n): round(3600 * rows[n]["units_per_s"] / n) for n in workers},
            "speedup": round(speedup, 3), "efficiency": round(speedup * first / last, 3),
            "same_output": len({r["content_hash"] for r in rows.values()}) == 1}


def main(args) -> int:
    try:
        workers = tuple(int(x) for x in args.workers.split(","))
    except ValueError:
        raise E2WMError(f"--workers {args.workers!r}: expected counts like 1,2") from None
    if not all(1 <= w <= 1024 for w in workers):
        raise E2WMError(f"--workers {args.workers!r}: each count must be in [1, 1024]")

    def show(n, row):
        print(f"{n} worker(s): {row['units_per_s']} units/s ({row['run_s']} s), "
              f"{3600 * row['units_per_s'] / n:,.0f} plans per core-hour", flush=True)
    r = run(workers, args.units, args.simulations, progress=show)
    return report(r, f"speedup {r['speedup']}x, efficiency {r['efficiency']}; same output: {r['same_output']}")
