"""Process group, device and launch helpers. Device and backend come from DeepSpeed's accelerator:
nccl on CUDA, gloo on CPU (see shared notes, stack.md section 2)."""
from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
import tempfile
from collections.abc import Iterator

import torch

from e2wm.errors import E2WMError


def cpu_env(extra: dict | None = None) -> dict:
    """An environment for DeepSpeed on CPU: gloo, one thread per rank, JIT cache out of $HOME. Hub access
    (HF_HUB_OFFLINE and the like) is left as the user's environment has it."""
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("OMP_NUM_THREADS", "1")  # ranks share few cores; more threads only thrash
    from e2wm.train.hosts import EXT_DIR_NAME
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(tempfile.gettempdir(), EXT_DIR_NAME))
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port that was free a moment ago (tests run in parallel; 29500 would collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(nproc: int, port: int, module_or_script: str, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run` with a private port; `-m` form when given a dotted module."""
    target = ["-m", module_or_script] if not module_or_script.endswith(".py") else [module_or_script]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(port), *target, *args]


def deepspeed_cmd(nproc: int, port: int, module: str, args: list[str]) -> list[str]:
    """The `deepspeed` launcher (`--num_gpus` is required on CPU, where it would count NUMA nodes)."""
    return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc),
            "--master_port", str(port), "--module", module, *args]


def is_distributed_env() -> bool:
    """True when launched by torchrun/deepspeed (they export WORLD_SIZE and RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """The launcher's world size, known before the process group exists (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator():
    from deepspeed.accelerator import get_accelerator
    return get_accelerator()


def device() -> torch.device:
    """This rank's device: the accelerator's device for LOCAL_RANK (cuda:N on GPUs, cpu on CPU)."""
    acc = accelerator()
    if acc.device_name() == "cpu":
        return torch.device("cpu")
    return torch.device(acc.device_name(int(os.environ.get("LOCAL_RANK", "0"))))


TIMEOUT_ENV = "E2WM_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600   # DeepSpeed's 10 min is too short for rank-0 work behind a barrier (a 13B export or
                           # consolidated Fisher write): the other ranks' collective would time out meanwhile


def timeout() -> datetime.timedelta:
    """The collectives' timeout: $E2WM_DIST_TIMEOUT_S seconds, default 3600 (one hour)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise E2WMError(f"{TIMEOUT_ENV}={raw!r}: not a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """`with process_group() as (rank, world):` the process group on the accelerator's backend.

    A group that exists already (the caller's, Ray Train's) is used and kept. Otherwise one is created: the
    launcher's (torchrun, deepspeed) when its variables are set, else, for a lone process, rank 0 of a world
    of 1 on a free local port, so single-process runs go through the same DeepSpeed code as multi-node ones.
    Collectives time out after `timeout()` ($E2WM_DIST_TIMEOUT_S). A run across nodes without a
    TORCH_EXTENSIONS_DIR builds DeepSpeed's JIT ops into a per-node folder (extensions.node_local_root()).
    The lone process's launcher variables hold only inside the block: os.environ is left as it was found, so
    a later run or a child process does not inherit them. A DeepSpeed engine made inside must be destroyed
    before the block ends (the group going first aborts ZeRO-3 at exit).
    """
    import deepspeed
    import torch.distributed as dist

    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    wait = timeout()   # bad input fails before anything starts
    saved = {key: os.environ.get(key) for key in (*_LAUNCHER_VARS, "TORCH_EXTENSIONS_DIR")}
    try:
        if not is_distributed_env():
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
        from e2wm.train import extensions
        extensions.use_node_local_root()
        acc = accelerator()
        if acc.device_name() != "cpu":
            acc.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        elif not extensions.skip_shm_op(world_size()):
            extensions.check_locks([extensions.SHM_OP])   # a killed build's lock would hang us forever
        deepspeed.init_distributed(dist_backend=acc.communication_backend_name(), timeout=wait)
        yield dist.get_rank(), dist.get_world_size()
        if dist.get_world_size() > 1:   # a clean exit: no rank tears its transport down while another still
            dist.barrier()              # works (rank 0 writing results), which has aborted a gloo rank at exit
    finally:
        if dist.is_initialized():
            import deepspeed.comm as ds_comm
            if ds_comm.is_initialized():   # DeepSpeed's also drops its cached groups, so a later run starts clean
                ds_comm.destroy_process_group()
            else:
                dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------- a rank's entry and exit

ERROR_DIR = "E2WM_ERROR_DIR"   # set by a launcher that reports its ranks' failures itself (e2wm.pipeline.launch)


def guarded(stage) -> int:
    """`stage()`'s exit code; bad input (E2WMError) is exit code 2 and one line on rank 0, other exceptions
    keep their traceback. Under a launcher that set $E2WM_ERROR_DIR, each failing rank records its failure
    there as rank-N.json ({"rank", "kind": "bad_input" or "crash", "type", "message"}) and prints no line: the
    launcher makes the one line from those files."""
    from e2wm.quiet import quiet_libraries
    quiet_libraries()
    try:
        return stage() or 0
    except E2WMError as e:
        # every rank fails alike, so one line is enough
        if not _record_failure("bad_input", e) and os.environ.get("RANK", "0") == "0":
            print(f"e2wm: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        _record_failure("crash", e)
        raise


def _record_failure(kind: str, error: Exception) -> bool:
    """Write this rank's failure into the launcher's error folder; False when no launcher asked for it."""
    folder = os.environ.get(ERROR_DIR)
    if not folder:
        return False
    from e2wm.files import write_json
    rank = int(os.environ.get("RANK", "0"))
    write_json(os.path.join(folder, f"rank-{rank}.json"),
               {"rank": rank, "kind": kind, "type": type(error).__name__, "message": str(error)})
    return True


def exit_now(code: int) -> None:
    """Leave without the interpreter's teardown. Every file is written and the process group is gone by
    now, but C++ threads of torch.distributed / DeepSpeed can still abort a ZeRO-3 rank while Python
    unwinds ("terminate called without an active exception"), turning a finished run into a failed one."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
