"""Run one GPU stage (`e2wm fisher`, `e2wm train`, `e2wm eval`) on N ranks: in this process, under a launcher on this
machine, or as Ray Train workers on a Ray cluster.

Whatever starts the ranks, each runs the same entry point with the same argv and joins the process group it
finds (torchrun's, the deepspeed launcher's or Ray Train's), which DeepSpeed then uses; so the launchers give
the same result for the same world size. A failed stage comes back as one E2WMError line naming it.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading

from e2wm.errors import E2WMError

ENTRIES = {"fisher": "e2wm.train.fisher", "train": "e2wm.train", "eval": "e2wm.eval"}   # stage -> `-m MODULE`
_MAINS = {"fisher": ("e2wm.train.fisher", "main_fisher"), "train": ("e2wm.train.__main__", "main"),
          "eval": ("e2wm.eval.__main__", "main")}
LAUNCHERS = ("local", "deepspeed", "ray")
# `e2wm: error: ...` (guarded) or `e2wm fisher: error: ...` (argparse): the one line bad input gets
_E2WM_ERROR = re.compile(r"^e2wm[\w -]*: error: (.+)$")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")
_EVERY_RANK = {"E2WM_ERRORS_ON_EVERY_RANK": "1"}   # a rank's error line, even if rank 0 dies before its own
_LAUNCHER_EXCEPTION = re.compile(r"ChildFailedError|CalledProcessError")   # the launcher's, after the rank's


def run_stage(entry: str, argv: list[str], *, launcher: str = "local", workers: int = 1, use_gpu: bool = False,
              address: str | None = None, log=print) -> None:
    """Run stage `entry` ("fisher" or "train") with `argv` on `workers` ranks; E2WMError if it fails.

    local: in this process (1 rank). deepspeed: `workers` processes on this machine, the deepspeed launcher
    on GPUs (`use_gpu`) or torchrun on gloo, their output streamed to `log` line by line. ray: `workers`
    Ray Train workers, one rank each (nccl on GPUs, else gloo), on the cluster at `address` ("auto",
    "local" for a private instance, or host:port; a Ray this process already joined is used as it is);
    Ray forwards their output to this process's stdout and stderr.
    """
    if entry not in ENTRIES:
        raise E2WMError(f"stage {entry!r}: not a launchable stage; have {', '.join(ENTRIES)}")
    if launcher not in LAUNCHERS:
        raise E2WMError(f"stage {entry}: launcher {launcher!r}; must be one of {', '.join(LAUNCHERS)}")
    if workers < 1:
        raise E2WMError(f"stage {entry}: workers={workers}; must be 1 or more")
    argv = [str(a) for a in argv]
    if launcher == "local":
        if workers != 1:
            raise E2WMError(f"stage {entry}: the local launcher runs 1 rank in this process, not {workers}; "
                            f"use launcher deepspeed or ray for several")
        _run_local(entry, argv)
    elif launcher == "deepspeed":
        _run_deepspeed(entry, argv, workers, use_gpu, log)
    else:
        _run_ray(entry, argv, workers, use_gpu, address)


# ---------------------------------------------------------------- in this process (local, each Ray worker)

class _ErrorTee:
    """A stderr that keeps the one-line error an entry point prints (it comes back in the E2WMError, so
    it is not shown twice) and writes everything else through."""

    def __init__(self, stream):
        self.stream, self.line, self._kept = stream, None, False

    def write(self, text: str) -> int:
        m = _E2WM_ERROR.match(text.strip())
        if m or self._kept and text == "\n":   # print() writes the line, then its end
            self.line = m.group(1).strip() if m else self.line
            self._kept = bool(m)
            return len(text)
        self._kept = False
        return self.stream.write(text)

    def __getattr__(self, name):   # flush, isatty, fileno, encoding, ... of the real stream
        return getattr(self.stream, name)


def _call_main(entry: str, argv: list[str]) -> None:
    """The stage's main(argv) in this process; an E2WMError or a non-zero exit -> one E2WMError line."""
    module, name = _MAINS[entry]
    main = getattr(importlib.import_module(module), name)
    tee = _ErrorTee(sys.stderr)
    try:
        with contextlib.redirect_stderr(tee):
            rc = main(argv)
    except E2WMError as e:
        raise E2WMError(f"stage {entry} failed: {e}") from None
    except SystemExit as e:   # argparse's usage error; its line went through the tee
        rc = e.code if isinstance(e.code, int) else 2
    if rc:
        raise E2WMError(f"stage {entry} failed (exit {rc})" + (f": {tee.line}" if tee.line else ""))


def _run_local(entry: str, argv: list[str]) -> None:
    # a world of 1 started here takes its launcher variables back when it shuts down (e2wm.train.dist), so
    # a later stage starts its own world rather than rejoining this one's port
    _call_main(entry, argv)


# ---------------------------------------------------------------- deepspeed / torchrun on this machine

def _run_deepspeed(entry: str, argv: list[str], workers: int, use_gpu: bool, log) -> None:
    from e2wm.train import dist as edist

    port = edist.free_port()
    if use_gpu:
        import torch
        if torch.cuda.device_count() < workers:
            raise E2WMError(f"stage {entry}: {workers} GPU ranks asked for, this machine has "
                            f"{torch.cuda.device_count()} GPU(s)")
        cmd, env, how = (edist.deepspeed_cmd(workers, port, ENTRIES[entry], argv), {**os.environ, **_EVERY_RANK},
                         "deepspeed")
    else:
        cmd, env, how = edist.torchrun_cmd(workers, port, ENTRIES[entry], argv), edist.cpu_env(_EVERY_RANK), \
            "torchrun, gloo"
        if workers > 1:   # the ranks will load the shm op: a stale build lock is one line here, not a hang there
            from pathlib import Path

            from e2wm.train import extensions
            extensions.check_locks([extensions.SHM_OP], root=Path(env["TORCH_EXTENSIONS_DIR"]))
    log(f"{entry}: {workers} rank(s) ({how})")
    rc, error = _stream(cmd, env, log)
    if rc:
        raise E2WMError(f"stage {entry} failed (exit {rc})" + (f": {error}" if error else ""))


def _stream(cmd: list[str], env: dict, log) -> tuple[int, str | None]:
    """Run `cmd`, passing each line of its stdout and stderr to `log` as it comes (in this thread);
    returns (exit code, its last error line). If this process is interrupted, the ranks go too."""
    proc = subprocess.Popen(cmd, env=env, text=True, bufsize=1, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lines: queue.Queue = queue.Queue()

    def pump(stream, name):
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
        lines.put((name, None))

    for stream, name in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=pump, args=(stream, name), daemon=True).start()
    e2wm_error, exception, last = None, None, None
    try:
        open_streams = 2
        while open_streams:
            name, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            m = _E2WM_ERROR.match(line.strip())
            if m:   # shown once, in the E2WMError
                e2wm_error = m.group(1).strip()
                continue
            log(line)
            if name == "err" and _EXCEPTION.match(line.strip()) and not _LAUNCHER_EXCEPTION.search(line):
                exception = line.strip()
            elif name == "err" and line.strip():
                last = line.strip()
        rc = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    # bad input's one line, else the last exception a rank raised, else whatever stderr said last
    return rc, e2wm_error or exception or last


# ---------------------------------------------------------------- Ray Train

def _ray_worker(config: dict) -> None:
    """One Ray Train worker = one rank: the stage's main inside the process group Ray Train set up."""
    if not config["use_gpu"]:
        from e2wm.train import dist as edist
        for k, v in edist.cpu_env().items():   # before DeepSpeed picks its accelerator
            os.environ.setdefault(k, v)
    _call_main(config["entry"], config["argv"])


def _run_ray(entry: str, argv: list[str], workers: int, use_gpu: bool, address: str | None) -> None:
    import ray

    started = not ray.is_initialized()   # a Ray this process joined before stays; one started here ends here
    if started:
        if address in (None, "local"):   # a private instance big enough for the workers
            ray.init(address="local", num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False)
        else:
            ray.init(address=address)
    try:
        _fit(entry, argv, workers, use_gpu)
    finally:
        if started:
            ray.shutdown()


def _fit(entry: str, argv: list[str], workers: int, use_gpu: bool) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker=_ray_worker,
        train_loop_config={"entry": entry, "argv": argv, "use_gpu": use_gpu},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        # Ray Train's print patch would send every line twice (logger and stream); Ray forwards the stream
        run_config=RunConfig(name=f"e2wm-{entry}", worker_runtime_env={"env_vars": {
            "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **_EVERY_RANK}}))
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise E2WMError(_ray_failure(entry, e)) from None


def _ray_failure(entry: str, error) -> str:
    """One line from a Ray Train failure: the lowest failed rank's E2WMError (which names the stage), else
    the last exception line of what went wrong."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        cause = getattr(failures[rank], "cause", failures[rank])
        if isinstance(cause, E2WMError):
            return f"{cause} (Ray Train worker {rank})"
    text = str(failures[min(failures)]) if failures else str(error)
    found = [ln.strip() for ln in text.splitlines() if _EXCEPTION.match(ln.strip())]
    return f"stage {entry} failed on Ray Train: " + (found[-1] if found else " ".join(text.split())[:300])
