"""Run one GPU stage (fisher, train, eval) on N ranks: in this process, under a launcher on this machine, or
as Ray Train workers on a Ray cluster.

A stage is a typed call: its module's `run(CONFIG)`. Whatever starts the ranks, each gets the same config (a
launched rank reads it from the file this process wrote, a Ray Train worker from its loop config), calls the
same entry and joins the process group it finds (torchrun's, the deepspeed launcher's or Ray Train's), which
DeepSpeed then uses; so the launchers give the same result for the same world size. A failed stage comes back
as one E2WMError line naming it, made from data, never from the ranks' output: in this process, the exception
itself; from launched processes, the file each failing rank writes into the run's error folder
($E2WM_ERROR_DIR, see e2wm.train.dist.guarded); from Ray Train, its worker failures.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from e2wm.config import build, to_plain
from e2wm.errors import E2WMError
from e2wm.pipeline.config import LAUNCHERS

# stage -> its module: `CONFIG` (the config dataclass) and `run(cfg, log=print)`
ENTRIES = {"fisher": "e2wm.train.fisher_run", "train": "e2wm.train.__main__", "eval": "e2wm.eval.__main__"}


def run_stage(entry: str, cfg, *, launcher: str = "local", workers: int = 1, use_gpu: bool = False,
              address: str | None = None, max_failures: int = 0, log=print) -> None:
    """Run stage `entry` on its config `cfg` on `workers` ranks; E2WMError if it fails.

    local: in this process (1 rank). deepspeed: `workers` processes on this machine, the deepspeed launcher
    on GPUs (`use_gpu`) or torchrun on gloo, their output (stdout and stderr) streamed to `log` line by line.
    ray: `workers` Ray Train workers, one rank each (nccl on GPUs, else gloo), on the cluster at `address` ("auto",
    "local" for a private instance, or host:port; a Ray this process already joined is used as it is);
    Ray forwards their output to this process's stdout and stderr. `max_failures` (ray only): how many times
    Ray Train restarts the workers after a failure (a lost node, a killed worker; -1: no limit); a restarted
    training resumes from the run's latest checkpoint, a restarted Fisher from its own (with checkpoint_every).
    Bad input fails each attempt alike, so it too comes back as one line, after the last.
    """
    if entry not in ENTRIES:
        raise E2WMError(f"stage {entry!r}: not a launchable stage; have {', '.join(ENTRIES)}")
    if launcher not in LAUNCHERS:
        raise E2WMError(f"stage {entry}: launcher {launcher!r}; must be one of {', '.join(LAUNCHERS)}")
    if workers < 1:
        raise E2WMError(f"stage {entry}: workers={workers}; must be 1 or more")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < -1:
        raise E2WMError(f"stage {entry}: max_failures={max_failures!r}; must be -1 (no limit), 0 or more")
    if launcher == "local":
        if workers != 1:
            raise E2WMError(f"stage {entry}: the local launcher runs 1 rank in this process, not {workers}; "
                            f"use launcher deepspeed or ray for several")
        call(entry, cfg, log)
    elif launcher == "deepspeed":
        _run_deepspeed(entry, to_plain(cfg), workers, use_gpu, log)
    else:
        _run_ray(entry, to_plain(cfg), workers, use_gpu, address, max_failures)


# ---------------------------------------------------------------- in this process (local, each rank)

def run_entry(entry: str, cfg, log=print) -> None:
    """Stage `entry`'s `run` on `cfg`: its config, or that config as plain data (what a rank reads)."""
    module = importlib.import_module(ENTRIES[entry])
    if isinstance(cfg, dict):
        cfg = build(module.CONFIG, cfg, f"stage {entry} config")
    module.run(cfg, log=log)


def call(entry: str, cfg, log=print) -> None:
    """`run_entry` with bad input as one E2WMError naming the stage."""
    from e2wm.quiet import quiet_libraries
    quiet_libraries()
    try:
        run_entry(entry, cfg, log)
    except E2WMError as e:
        raise E2WMError(f"stage {entry} failed: {e}") from None


# ---------------------------------------------------------------- deepspeed / torchrun on this machine

def _run_deepspeed(entry: str, cfg: dict, workers: int, use_gpu: bool, log) -> None:
    from e2wm.files import write_json
    from e2wm.train import dist as edist
    from e2wm.train.dist import ERROR_DIR

    port = edist.free_port()
    with tempfile.TemporaryDirectory(prefix="e2wm-stage-") as tmp:   # the config; each failing rank's file
        errors, config = os.path.join(tmp, "errors"), os.path.join(tmp, "config.json")
        os.mkdir(errors)
        write_json(config, cfg)
        argv = [entry, config]   # python -m e2wm.pipeline.rank STAGE CONFIG
        if use_gpu:
            import torch
            if torch.cuda.device_count() < workers:
                raise E2WMError(f"stage {entry}: {workers} GPU ranks asked for, this machine has "
                                f"{torch.cuda.device_count()} GPU(s)")
            cmd, env, how = (edist.deepspeed_cmd(workers, port, "e2wm.pipeline.rank", argv),
                             {**os.environ, ERROR_DIR: errors}, "deepspeed")
        else:
            cmd, env, how = (edist.torchrun_cmd(workers, port, "e2wm.pipeline.rank", argv),
                             edist.cpu_env({ERROR_DIR: errors}), "torchrun, gloo")
            if workers > 1:   # the ranks will load the shm op: a stale build lock is one line here, not a hang there
                from e2wm.train import extensions
                extensions.check_locks([extensions.SHM_OP], root=Path(env["TORCH_EXTENSIONS_DIR"]))
        log(f"{entry}: {workers} rank(s) ({how})")
        rc = _stream(cmd, env, log)
        if rc:
            raise E2WMError(f"stage {entry} failed (exit {rc})" + _rank_failure(Path(errors)))


def _stream(cmd: list[str], env: dict, log) -> int:
    """Run `cmd`, passing each line it prints (stdout and stderr, as they come) to `log`; its exit code.
    If this process is interrupted, the ranks go too."""
    proc = subprocess.Popen(cmd, env=env, text=True, bufsize=1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for line in proc.stdout:
            log(line.rstrip("\r\n"))
        return proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _rank_failure(errors: Path) -> str:
    """": MESSAGE" of the failed ranks' files: the lowest rank's bad input, else the lowest rank's crash
    (its exception type and message); "" when no rank left one (killed, or a usage error)."""
    failures = sorted((json.loads(f.read_text()) for f in errors.glob("rank-*.json")),
                      key=lambda f: (f["kind"] != "bad_input", f["rank"]))
    if not failures:
        return ""
    first = failures[0]
    message = first["message"] if first["kind"] == "bad_input" else f"{first['type']}: {first['message']}"
    return ": " + " ".join(message.split())


# ---------------------------------------------------------------- Ray Train

KV_NAMESPACE = "e2wm"   # Ray's key-value store: which fits have started (see _restarted)


def _ray_worker(config: dict) -> None:
    """One Ray Train worker = one rank: the stage's entry inside the process group Ray Train set up."""
    if not config["use_gpu"]:
        from e2wm.train import dist as edist
        for k, v in edist.cpu_env().items():   # before DeepSpeed picks its accelerator
            os.environ.setdefault(k, v)
    if os.path.isdir(config.get("cwd") or ""):   # the driver's folder (a shared filesystem): relative paths hold
        os.chdir(config["cwd"])
    cfg = config["cfg"]
    if config["entry"] == "train" and _restarted(config["fit"]):
        cfg = _resume_latest(cfg)
    call(config["entry"], cfg)


def _restarted(fit: str) -> bool:
    """True on every rank of an attempt that Ray Train started after a failure of this fit. Each rank looks
    whether rank 0 of an earlier attempt marked the fit as started (in Ray's key-value store, which outlives
    the workers), then rank 0 marks it; the barrier between makes every rank of an attempt see the same."""
    import torch.distributed as dist
    from ray.experimental import internal_kv
    key = f"fit-{fit}".encode()
    seen = internal_kv._internal_kv_exists(key, namespace=KV_NAMESPACE)
    dist.barrier()
    if dist.get_rank() == 0 and not seen:
        internal_kv._internal_kv_put(key, b"1", namespace=KV_NAMESPACE)
    return seen


def _resume_latest(cfg: dict) -> dict:
    """A restarted training's config: resume from the run's latest checkpoint, whatever checkpoint.resume said
    for the first attempt (never, or a step folder this run has moved past); as it was if there is none yet."""
    from e2wm.train.checkpoint import latest
    if latest(cfg["out"]) is None:
        return cfg
    return {**cfg, "checkpoint": {**cfg["checkpoint"], "resume": "auto"}}


def _run_ray(entry: str, cfg: dict, workers: int, use_gpu: bool, address: str | None, max_failures: int = 0) -> None:
    import ray

    started = not ray.is_initialized()   # a Ray this process joined before stays; one started here ends here
    if started:
        if address in (None, "local"):   # a private instance big enough for the workers
            ray.init(address="local", num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False)
        else:
            ray.init(address=address)
    try:
        _fit(entry, cfg, workers, use_gpu, max_failures)
    finally:
        if started:
            ray.shutdown()


def _fit(entry: str, cfg: dict, workers: int, use_gpu: bool, max_failures: int = 0) -> None:
    import uuid

    import ray
    from ray.experimental import internal_kv
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from e2wm.train import dist as edist
    fit = uuid.uuid4().hex
    trainer = TorchTrainer(
        train_loop_per_worker=_ray_worker,
        train_loop_config={"entry": entry, "cfg": cfg, "use_gpu": use_gpu, "fit": fit, "cwd": os.getcwd()},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo",   # Ray Train makes the group, so the
                                 timeout_s=int(edist.timeout().total_seconds())),  # timeout must reach it here
        # Ray Train's print patch would send every line twice (logger and stream); Ray forwards the stream
        run_config=RunConfig(name=f"e2wm-{entry}", failure_config=FailureConfig(max_failures=max_failures),
                             worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}))
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise E2WMError(_ray_failure(entry, e)) from None
    finally:
        internal_kv._internal_kv_del(f"fit-{fit}".encode(), namespace=KV_NAMESPACE)


def _ray_failure(entry: str, error) -> str:
    """One line from a Ray Train failure: the lowest failed rank's E2WMError (which names the stage), else the
    lowest failed rank's exception (type and first line)."""
    failures = getattr(error, "worker_failures", None) or {}
    causes = {rank: _root_cause(failure) for rank, failure in failures.items()}
    for rank in sorted(causes):
        if isinstance(causes[rank], E2WMError):
            return f"{causes[rank]} (Ray Train worker {rank})"
    cause = causes[min(causes)] if causes else _root_cause(error)
    lines = str(cause).strip().splitlines()
    return f"stage {entry} failed on Ray Train: {type(cause).__name__}" + (f": {lines[0].strip()}" if lines else "")


def _root_cause(error):
    """The exception a worker raised, out of Ray's wrappers (each keeps it as `cause`)."""
    while getattr(error, "cause", None) is not None and error.cause is not error:
        error = error.cause
    return error
