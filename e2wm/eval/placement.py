"""Where `e2wm eval` keeps the model's weights, and in what precision.

Precision (`--precision`): `auto` is bf16 on an accelerator that supports it and fp32 on CPU; the
weights load directly in that dtype onto their device (`from_pretrained` with a device map), with no
full fp32 copy staged in host memory first.

Placement (`--placement`):
- `replicate` (default): each rank holds the whole model on its own device, and the ranks deal out
  the items (data parallel). For every model that fits one device.
- `spread`: the model's layers are spread over this rank's devices by accelerate's big-model dispatch:
  the node's accelerators are dealt out between the node's ranks (8 GPUs and 4 ranks per node: 2
  each; one rank per node: all 8), and what does not fit them (`--device-memory` GiB per device, by
  default what is free) stays in host memory and runs on the first device. The ranks still deal out
  the items, so a model larger than one device is evaluated by one rank per node, and nodes still split
  the work. On a CPU host there is one device and `spread` is `replicate`.

Not ZeRO-3 inference: under ZeRO-3 every forward gathers every layer on every rank in lockstep, so the
ranks must run the same number of forwards (transformers' `synced_gpus`) and each step waits on the
network; a spread model's ranks stay independent.
"""
from __future__ import annotations

import torch

from e2wm.errors import E2WMError
from e2wm.train.model import DTYPES



def dtype(precision: str) -> torch.dtype:
    """The dtype of `--precision` (auto: bf16 on an accelerator that supports it, else fp32)."""
    if precision != "auto":
        return DTYPES[precision]
    from e2wm.train.dist import accelerator
    acc = accelerator()
    return torch.bfloat16 if acc.device_name() != "cpu" and acc.is_bf16_supported() else torch.float32


def precision_name(d: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[d]


def rank_devices(count: int, local_rank: int, local_world: int) -> list[int]:
    """The accelerator indices a spread model of this rank uses: the node's `count` devices dealt out in
    equal contiguous shares between its `local_world` ranks."""
    if count < local_world:
        raise E2WMError(f"--placement spread: {local_world} ranks on this node but {count} devices; "
                        f"start at most one rank per device (one per node spreads over them all)")
    share = count // local_world
    return list(range(local_rank * share, (local_rank + 1) * share))


def memory_budget(devices: list[int], cap_gib: float) -> dict:
    """accelerate's `max_memory` over `devices` (bytes free, or `cap_gib` GiB when set) and host memory."""
    from accelerate.utils import get_max_memory

    free = get_max_memory()
    budget = {i: int(cap_gib * 2**30) if cap_gib else free[i] for i in devices}
    budget["cpu"] = free["cpu"]
    return budget


def device_map(cfg) -> dict | str:
    """`from_pretrained`'s device map for `cfg` (an EvalConfig): this rank's device, or `auto` (the budget
    given by `max_memory`) for a spread model on an accelerator."""
    from e2wm.train.dist import device
    here = device()
    if cfg.placement == "replicate" or here.type == "cpu":
        return {"": here}
    return "auto"


def max_memory(cfg) -> dict | None:
    """The spread budget of this rank (None where the model is not spread)."""
    import os

    from e2wm.train.dist import accelerator
    if device_map(cfg) != "auto":
        return None
    local_rank, local_world = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return memory_budget(rank_devices(accelerator().device_count(), local_rank, local_world), cfg.device_memory)


def input_device(model) -> torch.device:
    """Where inputs go: the device of the model's first parameter that holds data (a spread model's
    offloaded layers are on `meta`, loaded as they run)."""
    return next(p.device for p in model.parameters() if p.device.type != "meta")


def describe(model) -> str | None:
    """Where a spread model's modules went ("cuda:0 11 modules, cpu 3 modules"), None for one not spread."""
    layout = getattr(model, "hf_device_map", None)
    if layout is None and hasattr(model, "get_base_model"):   # under a LoRA adapter
        layout = getattr(model.get_base_model(), "hf_device_map", None)
    if not layout or len(layout) == 1:
        return None
    count: dict[str, int] = {}
    for where in layout.values():
        key = f"device {where}" if isinstance(where, int) else str(where)
        count[key] = count.get(key, 0) + 1
    return ", ".join(f"{k}: {n} modules" for k, n in count.items())
