"""The collection driver: job spec -> work units -> sharded, resumable output with a manifest.

Unit i goes to shard i // shard_size. A shard is written (to a temporary name, then renamed) once
all of its units are back, as episode content JSON lines in unit order, so its bytes do not depend
on which worker ran what or in which order results came back. The manifest, rewritten the same way
after each shard, lists every finished shard with its counts, sha256 and failures; rerunning the
command skips those shards. Results of unfinished shards wait in memory, which stays bounded by
the in-flight window, not by the job's length.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from e2wm.collect.config import CollectConfig
from e2wm.collect.episodes import canonical_json
from e2wm.collect.pool import Unit, WorkerPool
from e2wm.errors import E2WMError
from e2wm.world.activities import ALL_ACTIVITIES, fitting, get_activity
from e2wm.world.graph import Scene
from e2wm.world.procedural import generate_apartment
from e2wm.world.world import ENGINE_VERSION, World

MANIFEST = "manifest.json"


def plan_units(cfg: CollectConfig) -> list[Unit]:
    """The job's units, a pure function of the config: plans first, then explorations.

    Procedural: the chosen activities (default: the library and its held-out set) take turns, so
    any `plans` >= their number covers each; plan k asks for activity k % A in the
    ((k // A) + a)-th apartment (cycling) of those where that activity `a` can be posed, so
    neighbouring activities land in different apartments. RobotHow (E2WM's goal source): plan k
    runs RobotHow program scene_first + k % scenes (in name order) towards its own goal.
    Explorations follow: the multi-agent ones, then the single-agent counting stories; each
    runs in apartment scene_first + j % scenes.
    """
    units = []
    if cfg.scene_source == "robothow":
        from e2wm.world.scenes import robothow_programs
        names = [p.name for p in robothow_programs()][cfg.scene_first: cfg.scene_first + cfg.scenes]
        if not names:
            raise E2WMError(f"collect config: scene_first={cfg.scene_first}: past the last RobotHow program")
        units = [Unit(k, "plan", f"robothow:{names[k % len(names)]}") for k in range(cfg.plans)]
    elif cfg.plans:
        chosen = [get_activity(a) for a in cfg.activities] or list(ALL_ACTIVITIES)
        hosts = activity_hosts(chosen, range(cfg.scene_first, cfg.scene_first + cfg.scenes))
        order = [a for a in chosen if hosts[a.name]]
        if not order:
            raise E2WMError(f"collect config: none of the {len(chosen)} activities can be posed in "
                            f"apartments {cfg.scene_first}..{cfg.scene_first + cfg.scenes - 1}")
        for k in range(cfg.plans):
            i = k % len(order)
            seeds = hosts[order[i].name]
            units.append(Unit(k, "plan", f"procedural:{seeds[(k // len(order) + i) % len(seeds)]}",
                              order[i].name))
    n = cfg.plans
    for j in range(cfg.explorations):
        units.append(Unit(n + j, "explore", f"procedural:{cfg.scene_first + j % cfg.scenes}"))
    n += cfg.explorations
    for j in range(cfg.stories):
        units.append(Unit(n + j, "story", f"procedural:{cfg.scene_first + j % cfg.scenes}"))
    return units


def activity_hosts(activities, seeds) -> dict[str, list[int]]:
    """Activity name -> the procedural apartments (of `seeds`) where it can be posed."""
    hosts: dict[str, list[int]] = {a.name: [] for a in activities}
    for seed in seeds:
        world = World(Scene.from_dict(generate_apartment(seed)))
        for a in fitting(world, activities):
            hosts[a.name].append(seed)
    return hosts


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.jsonl"


def load_manifest(out: Path, job: dict) -> dict:
    """The manifest of a previous run of the same job (finished shards verified), or a new one."""
    path = out / MANIFEST
    fresh = {"job": job, "engine": ENGINE_VERSION, "shards": {}}
    if not path.exists():
        return fresh
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise E2WMError(f"{path}: corrupt manifest ({e.msg} at {e.lineno}:{e.colno}); "
                        f"move it away to start over") from None
    if m.get("engine") != ENGINE_VERSION:
        raise E2WMError(f"{out}: was collected by engine {m.get('engine', 'unrecorded')}, this is "
                        f"{ENGINE_VERSION}; its episodes may not replay: use another --out")
    if m.get("job") != job:
        raise E2WMError(f"{out}: holds the output of a different job (its manifest's job differs); "
                        f"use another --out or remove it")
    for name, entry in m["shards"].items():
        p = out / name
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
            raise E2WMError(f"{p}: missing or altered since the manifest listed it; remove the shard "
                            f"and its manifest entry to redo it")
    return m


def _summarise(m: dict) -> None:
    shards = m["shards"]
    m["episodes"] = sum(s["episodes"] for s in shards.values())
    m["failures"] = sum(len(s["failures"]) for s in shards.values())
    m["content_hash"] = hashlib.sha256(
        "".join(shards[k]["sha256"] for k in sorted(shards)).encode()).hexdigest()


def collect(cfg: CollectConfig, progress=None, log=print) -> dict:
    """Run (or resume) the job; returns the stats written to stats.json."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    units = plan_units(cfg)
    n_shards = (len(units) + cfg.shard_size - 1) // cfg.shard_size
    m = load_manifest(out, cfg.job_dict())
    m["units"], m["shard_size"], m["n_shards"] = len(units), cfg.shard_size, n_shards
    todo = [u for u in units if shard_name(u.index // cfg.shard_size) not in m["shards"]]
    skipped = len(units) - len(todo)
    if skipped:
        log(f"resuming: {len(m['shards'])} of {n_shards} shards already done ({skipped} units skipped)")
    if progress is not None:
        progress(skipped, len(units))
    t0 = time.perf_counter()
    per_worker: dict[int, dict] = {}
    pending: dict[int, dict] = {}   # shard -> {unit index: result}
    restarts, run_s = 0, 0.0
    if todo:
        _init_ray(cfg)
        import ray
        pool = WorkerPool(cfg.workers, cfg.worker_cpus, cfg.max_in_flight, cfg.seed,
                          {"plan": cfg.mcts, "explore": cfg.explore, "story": cfg.story},
                          cfg.chaos_kill_every)
        t_run = time.perf_counter()
        try:
            for r in pool.results(todo):
                k = r["index"] // cfg.shard_size
                bucket = pending.setdefault(k, {})
                if r["index"] in bucket:
                    continue   # a retried unit that had already come back: keep the first
                bucket[r["index"]] = r
                w = per_worker.setdefault(r["worker"], {"units": 0, "simulations": 0, "search_s": 0.0})
                w["units"] += 1
                w["simulations"] += r["timing"].get("simulations", 0)
                w["search_s"] += r["timing"].get("search_s", 0.0)
                if progress is not None:
                    progress(1, len(units))
                expected = min(cfg.shard_size, len(units) - k * cfg.shard_size)
                if len(bucket) == expected:
                    _finish_shard(out, m, k, pending.pop(k))
            restarts, run_s = pool.restarts, time.perf_counter() - t_run
        finally:
            pool.shutdown()
            if cfg.address == "local":
                ray.shutdown()
    _summarise(m)
    _write_atomic(out / MANIFEST, json.dumps(m, indent=1, sort_keys=True).encode())
    failures = [f for k in sorted(m["shards"]) for f in m["shards"][k]["failures"]]
    _write_atomic(out / "failures.jsonl", "".join(canonical_json(f) + "\n" for f in failures).encode())
    wall = time.perf_counter() - t0
    done_now = len(todo)
    stats = {
        "units": len(units), "episodes": m["episodes"], "failures": m["failures"],
        "units_this_run": done_now, "skipped_resumed": skipped, "workers": cfg.workers,
        "wall_s": round(wall, 3), "run_s": round(run_s, 3),
        "episodes_per_s": round(done_now / run_s, 3) if done_now else 0.0,
        "restarts": restarts, "content_hash": m["content_hash"],
        "per_worker": {str(k): dict(v, sims_per_s=round(v["simulations"] / v["search_s"], 1)
                                    if v["search_s"] else 0.0) for k, v in sorted(per_worker.items())},
    }
    _write_atomic(out / "stats.json", json.dumps(stats, indent=1).encode())
    return stats


def _finish_shard(out: Path, m: dict, k: int, results: dict) -> None:
    lines, failures = [], []
    for i in sorted(results):
        r = results[i]
        if "error" in r:
            failures.append({"unit": i, "error": r["error"]})
        else:
            lines.append(r["episode"])
    data = "".join(line + "\n" for line in lines).encode()
    name = shard_name(k)
    _write_atomic(out / name, data)
    m["shards"][name] = {"units": [min(results), max(results)], "episodes": len(lines),
                         "failures": failures, "sha256": hashlib.sha256(data).hexdigest()}
    _summarise(m)
    _write_atomic(out / MANIFEST, json.dumps(m, indent=1, sort_keys=True).encode())


def _init_ray(cfg: CollectConfig) -> None:
    import ray
    if ray.is_initialized():
        return
    if cfg.address == "local":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        cpus = max(1, int(-(-cfg.workers * cfg.worker_cpus // 1)))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    else:
        ray.init(address=cfg.address, log_to_driver=False, logging_level="ERROR")
