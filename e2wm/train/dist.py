"""Launch and environment helpers for CPU/gloo DeepSpeed runs (see shared notes, stack.md section 2)."""
from __future__ import annotations

import os
import socket
import sys
import tempfile


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


def is_distributed_env() -> bool:
    """True when launched by torchrun/deepspeed (they export WORLD_SIZE and RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed() -> tuple[int, int]:
    """Initialise DeepSpeed's process group on gloo (CPU); returns (rank, world)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo")
    return dist.get_rank(), dist.get_world_size()


def ds_config(zero_stage: int, micro_batch: int = 1) -> dict:
    """Minimal fp32 DeepSpeed config; a torch optimizer is passed in, so no fused-op JIT."""
    return {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": zero_stage},
            "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False,
            "steps_per_print": 10**9}


def build_engine(peft_model, zero_stage: int, micro_batch: int = 1):
    """deepspeed.initialize over a LoRA model (AdamW on the LoRA params, never stepped here)."""
    import deepspeed
    import torch

    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    engine, *_ = deepspeed.initialize(model=peft_model, optimizer=opt,
                                      config=ds_config(zero_stage, micro_batch))
    return engine


def shutdown(engine=None, destroy_group: bool = True) -> None:
    """engine.destroy() BEFORE destroying the group: avoids the ZeRO-3 SIGABRT at exit."""
    import torch.distributed as dist

    if engine is not None:
        engine.destroy()
    if destroy_group and dist.is_initialized():
        dist.destroy_process_group()
