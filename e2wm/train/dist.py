"""Process group, device and launch helpers. Device and backend come from DeepSpeed's accelerator:
nccl on CUDA, gloo on CPU (see shared notes, stack.md section 2)."""
from __future__ import annotations

import os
import socket
import sys
import tempfile

import torch


def cpu_env(extra: dict | None = None) -> dict:
    """An environment for DeepSpeed on CPU: gloo, one thread per rank, JIT cache out of $HOME."""
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("OMP_NUM_THREADS", "1")  # ranks share few cores; more threads only thrash
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(tempfile.gettempdir(), "e2wm-torch-ext"))
    env.setdefault("HF_HUB_OFFLINE", "1")
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


_LONE_ENV: dict[str, str] = {}   # the launcher variables init_distributed set for a lone process


def init_distributed() -> tuple[int, int]:
    """Join (or create, for a lone process) the process group on the accelerator's backend.

    A process started without a launcher becomes rank 0 of a world of 1 on a free local port,
    so single-process runs go through the same DeepSpeed code as multi-node ones.
    """
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        if not is_distributed_env():
            lone = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
            os.environ.update(lone)
            _LONE_ENV.update(lone)   # taken back by shutdown: a later run or child process must not inherit them
        acc = accelerator()
        if acc.device_name() != "cpu":
            acc.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        else:
            from e2wm.train import extensions
            if not extensions.skip_shm_op(world_size()):
                extensions.check_locks([extensions.SHM_OP])   # a killed build's lock would hang us forever
        deepspeed.init_distributed(dist_backend=acc.communication_backend_name())
    return dist.get_rank(), dist.get_world_size()


def shutdown(engine=None, destroy_group: bool = True) -> None:
    """engine.destroy() BEFORE destroying the group: avoids the ZeRO-3 SIGABRT at exit."""
    import torch.distributed as dist

    if engine is not None:
        engine.destroy()
    if destroy_group and dist.is_initialized():
        import deepspeed.comm as ds_comm
        if ds_comm.is_initialized():   # DeepSpeed's also drops its cached groups, so a later run starts clean
            ds_comm.destroy_process_group()
        else:
            dist.destroy_process_group()
    if destroy_group:
        for key, value in list(_LONE_ENV.items()):
            if os.environ.get(key) == value:
                del os.environ[key]
        _LONE_ENV.clear()
