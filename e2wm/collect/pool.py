"""Simulator actors on Ray, and a pool that keeps a bounded number of units in flight per actor.

Ray semantics designed around: an actor restart re-runs `__init__` (a worker keeps no state that
matters), and a retried task runs again from the start (a unit is a pure function of its spec, so
running it twice gives the same bytes; the driver keeps the first result per unit index).
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

import ray

from e2wm.errors import E2WMError


@dataclass(frozen=True)
class Unit:
    index: int
    kind: str                  # "plan" | "explore" | "story" (a single-agent exploration)
    scene: str
    activity: str | None = None


def run_unit(unit: Unit, seed: int, configs: dict) -> dict:
    """One work unit -> {"index", "episode" (content JSON) | "error", "timing"}; `configs` maps a
    unit kind to its config (MCTSConfig for "plan", ExploreConfig for "explore" and "story")."""
    from e2wm.collect.explore import explore_episode
    from e2wm.collect.plans import plan_episode
    t0 = time.perf_counter()
    try:
        if unit.kind == "plan":
            ep = plan_episode(unit.scene, unit.activity, configs["plan"], seed, unit.index)
        else:
            ep = explore_episode(unit.scene, configs[unit.kind], seed, unit.index)
    except E2WMError as e:   # deterministic: the same unit fails the same way anywhere
        return {"index": unit.index, "error": str(e), "timing": {"wall_s": time.perf_counter() - t0}}
    timing = dict(ep.timing, wall_s=time.perf_counter() - t0,
                  simulations=ep.stats.get("simulations", 0) if ep.kind == "plan" else 0)
    return {"index": unit.index, "episode": ep.content_json(), "timing": timing}


@ray.remote(max_restarts=-1, max_task_retries=-1)
class SimWorker:
    """Holds the job's configs; runs units. Restarted by Ray if its process dies."""

    def __init__(self, seed: int, configs: dict, chaos_kill_every: int = 0):
        self.seed, self.configs = seed, configs
        self.chaos, self.done = chaos_kill_every, 0

    def ready(self) -> bool:
        return True

    def run(self, unit: Unit) -> dict:
        if self.chaos and self.done >= self.chaos:
            os._exit(1)   # fault injection: die hard mid-job; Ray restarts us and retries the unit
        out = run_unit(unit, self.seed, self.configs)
        self.done += 1
        out["pid"] = os.getpid()
        return out


class WorkerPool:
    """N SimWorker actors; `results(units)` yields unit results as they complete."""

    def __init__(self, n: int, cpus: float, max_in_flight: int, seed: int, configs: dict,
                 chaos_kill_every: int = 0):
        self.actors = [SimWorker.options(num_cpus=cpus).remote(seed, configs, chaos_kill_every)
                       for _ in range(n)]
        ray.get([a.ready.remote() for a in self.actors])   # started, so timings measure work only
        self.max_in_flight = max_in_flight
        self.pids: list[set[int]] = [set() for _ in range(n)]

    def results(self, units):
        todo = deque(units)
        in_flight: dict = {}            # object ref -> actor index
        load = [0] * len(self.actors)
        while todo or in_flight:
            for k in range(len(self.actors)):
                while todo and load[k] < self.max_in_flight:
                    in_flight[self.actors[k].run.remote(todo.popleft())] = k
                    load[k] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                k = in_flight.pop(ref)
                load[k] -= 1
                out = ray.get(ref)
                self.pids[k].add(out.pop("pid"))
                out["worker"] = k
                yield out

    @property
    def restarts(self) -> int:
        return sum(max(len(p) - 1, 0) for p in self.pids)

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
