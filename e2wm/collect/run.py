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
import os
import re
import socket
import time
from pathlib import Path

from e2wm.collect.config import ADDRESS, CollectConfig
from e2wm.collect.episodes import canonical_json
from e2wm.collect.pool import Unit, WorkerPool
from e2wm.errors import E2WMError
from e2wm.files import (MAX_DATA_BYTES, input_file, make_dir, output_dir, read_json, write_atomic,
                        write_json)
from e2wm.world.activities import ALL_ACTIVITIES, fitting, get_activity
from e2wm.world.graph import Scene
from e2wm.world.procedural import generate_apartment
from e2wm.world.world import ENGINE_VERSION, World

MANIFEST = "manifest.json"
SHARD_NAME = re.compile(r"shard-[0-9]{5}\.jsonl")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SHARDS = 10_000               # the manifest is rewritten after each shard: keep it small
MAX_MANIFEST_BYTES = 1 << 30
CONNECT_TIMEOUT_S = 10


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


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.jsonl"


def load_manifest(out: Path, job: dict, n_shards: int) -> dict:
    """The manifest of a previous run of the same job (finished shards verified), or a new one.

    Shards are read only under their plain names inside `out` (a manifest naming `../x` or `/x`
    is refused, as is a shard that is a symlink out of `out`, a device or a directory).
    """
    path = out / MANIFEST
    if not (path.exists() or path.is_symlink()):
        return {"job": job, "engine": ENGINE_VERSION, "shards": {}}
    try:
        m = read_json(path, "manifest", inside=out, limit=MAX_MANIFEST_BYTES)
    except E2WMError as e:
        raise E2WMError(f"corrupt manifest: {e}; move it away to start over") from None
    check_manifest(m, path, n_shards)
    engine = m["engine"]
    if engine != ENGINE_VERSION:
        by = f"engine {engine}" if isinstance(engine, str) and len(engine) < 80 else "an unrecorded engine"
        raise E2WMError(f"{path.parent}: was collected by {by}, this is {ENGINE_VERSION}; "
                        f"its episodes may not replay: use another --out")
    if m["job"] != job:
        raise E2WMError(f"{path.parent}: holds the output of a different job (its manifest's job "
                        f"differs); use another --out")
    verify_shards(out, m)
    return m


def read_manifest(out: Path) -> dict:
    """The manifest of a collect output folder, checked for shape (build-data's entry point)."""
    path = out / MANIFEST
    if not (path.exists() or path.is_symlink()):
        raise E2WMError(f"{out}: no {MANIFEST} (is it an `e2wm collect` output directory?)")
    m = read_json(path, "manifest", inside=out, limit=MAX_MANIFEST_BYTES)
    check_manifest(m, path)
    return m


def verify_shards(out: Path, m: dict, keep: bool = False) -> dict[str, bytes]:
    """Every shard the manifest lists, read from inside `out` and checked against its sha256
    ({name: bytes} with `keep`). A shard that is missing, altered, a symlink out of `out` or not a
    file is refused."""
    path = out / MANIFEST
    data = {}
    for name, entry in sorted(m["shards"].items()):
        p = out / name
        if not (p.exists() or p.is_symlink()):
            raise E2WMError(f"{p}: listed in {path} but missing; delete its entry from the manifest "
                            f"to redo it")
        f = input_file(p, "shard", inside=out, limit=MAX_DATA_BYTES)
        try:
            with f.open("rb") as fh:
                raw = fh.read() if keep else None
                digest = (hashlib.sha256(raw) if keep else hashlib.file_digest(fh, "sha256")).hexdigest()
        except OSError as e:
            raise E2WMError(f"{p}: cannot read shard ({e.strerror or e})") from None
        if digest != entry["sha256"]:
            raise E2WMError(f"{p}: altered since {path} listed it (sha256 differs); delete the shard "
                            f"and its manifest entry to redo it")
        if keep:
            data[name] = raw
    return data


def check_manifest(m, path: Path, n_shards: int | None = None) -> None:
    """A collect manifest's keys, types and shard names (plain names, below `n_shards` when given)."""
    def bad(what):
        raise E2WMError(f"{path}: not a collect manifest: {what}; move it away to start over")
    if not isinstance(m, dict):
        bad(f"expected a JSON object, got {type(m).__name__}")
    for key in ("job", "engine", "shards"):
        if key not in m:
            bad(f"no '{key}' key")
    if not isinstance(m["shards"], dict):
        bad(f"'shards' must be an object, got {type(m['shards']).__name__}")
    for name, e in m["shards"].items():
        if not SHARD_NAME.fullmatch(name) or (n_shards is not None and int(name[6:11]) >= n_shards):
            last = f" .. {shard_name(n_shards - 1)}" if n_shards is not None else " and up"
            bad(f"shard name {name[:80]!r} is not one of this job's shard-00000.jsonl{last}")
        if not isinstance(e, dict):
            bad(f"shards.{name} must be an object")
        if not isinstance(e.get("sha256"), str) or not SHA256.fullmatch(e["sha256"]):
            bad(f"shards.{name}.sha256 must be 64 hex digits")
        if not _is_count(e.get("episodes")):
            bad(f"shards.{name}.episodes must be an int >= 0")
        units = e.get("units")
        if not isinstance(units, list) or len(units) != 2 or not all(map(_is_count, units)):
            bad(f"shards.{name}.units must be [first, last] unit indices")
        if not isinstance(e.get("failures"), list):
            bad(f"shards.{name}.failures must be a list")


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _summarise(m: dict) -> None:
    shards = m["shards"]
    m["episodes"] = sum(s["episodes"] for s in shards.values())
    m["failures"] = sum(len(s["failures"]) for s in shards.values())
    m["content_hash"] = hashlib.sha256(
        "".join(shards[k]["sha256"] for k in sorted(shards)).encode()).hexdigest()


def prepare(cfg: CollectConfig, force: bool = False) -> tuple[Path, list[Unit], dict]:
    """Every check that needs no Ray and writes nothing: the output folder, the units, the manifest.

    Returns (out, units, manifest). `force` adopts a non-empty folder that holds no manifest, but
    even then no file there is overwritten: one with a name the job would write is refused.
    """
    out = output_dir(cfg.out, "--out", ours=(MANIFEST,), force=force)
    units = plan_units(cfg)
    n_shards = (len(units) + cfg.shard_size - 1) // cfg.shard_size
    if n_shards > MAX_SHARDS:
        raise E2WMError(f"{len(units):,} units in shards of shard_size={cfg.shard_size} make "
                        f"{n_shards:,} shards, over the {MAX_SHARDS:,} limit; raise shard_size")
    m = load_manifest(out, cfg.job_dict(), n_shards)
    if out.is_dir() and not (out / MANIFEST).exists():
        ours = {MANIFEST, "stats.json", "failures.jsonl", *map(shard_name, range(n_shards))}
        clash = sorted(ours.intersection(c.name for c in out.iterdir()))
        if clash:
            raise E2WMError(f"--out {out}: holds {clash[0]} but no {MANIFEST}: it is not this job's "
                            f"output, and collect never overwrites it; choose another --out")
    m["units"], m["shard_size"], m["n_shards"] = len(units), cfg.shard_size, n_shards
    return out, units, m


def collect(cfg: CollectConfig, progress=None, log=print, force: bool = False) -> dict:
    """Run (or resume) the job; returns the stats written to stats.json."""
    out, units, m = prepare(cfg, force)
    todo = [u for u in units if shard_name(u.index // cfg.shard_size) not in m["shards"]]
    skipped = len(units) - len(todo)
    if skipped:
        log(f"resuming: {len(m['shards'])} of {m['n_shards']} shards already done ({skipped} units skipped)")
    if progress is not None:
        progress(skipped, len(units))
    t0 = time.perf_counter()
    per_worker: dict[int, dict] = {}
    pending: dict[int, dict] = {}   # shard -> {unit index: result}
    restarts, run_s = 0, 0.0
    if todo:
        _init_ray(cfg)
        import ray
        try:
            make_dir(out)
            _summarise(m)   # marks the folder as ours before any shard: a killed first run resumes
            write_json(out / MANIFEST, m, sort_keys=True)
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
        finally:
            if cfg.address == "local":
                ray.shutdown()
    _summarise(m)
    write_json(out / MANIFEST, m, sort_keys=True)
    failures = [f for k in sorted(m["shards"]) for f in m["shards"][k]["failures"]]
    write_atomic(out / "failures.jsonl", "".join(canonical_json(f) + "\n" for f in failures))
    wall = time.perf_counter() - t0
    done_now = len(todo)
    stats = {
        "units": len(units), "episodes": m["episodes"], "failures": m["failures"],
        "units_this_run": done_now, "skipped_resumed": skipped, "workers": cfg.workers,
        "wall_s": round(wall, 3), "run_s": round(run_s, 3),
        "units_per_s": round(done_now / run_s, 3) if done_now else 0.0,
        "restarts": restarts, "content_hash": m["content_hash"],
        "per_worker": {str(k): dict(v, sims_per_s=round(v["simulations"] / v["search_s"], 1)
                                    if v["search_s"] else 0.0) for k, v in sorted(per_worker.items())},
    }
    write_json(out / "stats.json", stats)
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
    write_atomic(out / name, data)
    m["shards"][name] = {"units": [min(results), max(results)], "episodes": len(lines),
                         "failures": failures, "sha256": hashlib.sha256(data).hexdigest()}
    _summarise(m)
    write_json(out / MANIFEST, m, sort_keys=True)


def _init_ray(cfg: CollectConfig) -> None:
    import ray
    if ray.is_initialized():
        return
    if cfg.address == "local":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        cpus = max(1, int(-(-cfg.workers * cfg.worker_cpus // 1)))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        return
    if cfg.address != "auto":
        probe_address(cfg.address)
    try:
        ray.init(address=cfg.address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise E2WMError(f"address {cfg.address}: cannot connect to a Ray cluster ({reason})") from None


def probe_address(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S when nothing listens at host:port (ray.init would wait minutes)."""
    m = ADDRESS.fullmatch(address)
    host, port = m["host"].strip("[]"), int(m["port"])
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise E2WMError(f"address {address}: could not reach {host}:{port} within {CONNECT_TIMEOUT_S} s "
                        f"({why}); is the Ray cluster up?") from None
