"""DeepSpeed JSON from `ds_configs/` (or the user's file), with its "auto" values filled from the train config.

The train config owns batch sizes, accumulation, precision and clipping: in the JSON these keys are
"auto" or must agree with it. The global batch (`optim.global_batch_size`) is e2wm's, fixed whatever
the world size, so a run resumed on another world size sees the same batches. DeepSpeed's
train_batch_size is its slot count, micro × accumulation × world (what DeepSpeed checks), which may
exceed the global batch: the recipe deals the global batch over the slots and fills empty ones with
zero-weight rows.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import loads, read_text

NAMES = ("zero2", "zero3", "zero3_offload")


def _read(spec: str) -> tuple[dict, str]:
    if spec in NAMES:
        where = f"ds_configs/{spec}.json"
        text = resources.files("e2wm").joinpath(where).read_text()
    else:
        p = Path(spec)
        if not p.exists():
            raise E2WMError(f"deepspeed.config: {spec}: neither one of {', '.join(NAMES)} nor a JSON file")
        try:
            text, where = read_text(p, "DeepSpeed JSON config"), str(p)
        except E2WMError as e:
            raise E2WMError(f"deepspeed.config: {e}") from None
    data = loads(text, where)
    if not isinstance(data, dict):
        raise E2WMError(f"{where}: expected a JSON object")
    return data, where


def _own(ds: dict, path: tuple[str, ...], value, field: str, where: str) -> None:
    """Set a config-owned key: "auto" or absent takes `value`; anything else must equal it."""
    node = ds
    for p in path[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise E2WMError(f"{where}: {p} must be an object, got {node!r}")
    cur = node.get(path[-1], "auto")
    if cur != "auto" and cur != value:
        raise E2WMError(f"{where}: {'.'.join(path)} is {cur!r} but {field} gives {value!r}; set it to \"auto\"")
    node[path[-1]] = value


def _unfilled(d, prefix="") -> list[str]:
    out = []
    for k, v in d.items():
        if v == "auto":
            out.append(prefix + k)
        elif isinstance(v, dict):
            out += _unfilled(v, f"{prefix}{k}.")
    return out


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def offloads_optimizer(ds: dict) -> bool:
    offload = ds.get("zero_optimization", {}).get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)


def deepspeed_config(cfg, world: int, hidden: int | None = None) -> dict:
    """The DeepSpeed config dict for `cfg` on `world` ranks; `hidden` sizes ZeRO-3's "auto" buckets."""
    from e2wm.train.config import gradient_accumulation

    ds, where = _read(cfg.deepspeed.config)
    zero = ds.setdefault("zero_optimization", {})
    if not isinstance(zero, dict):
        raise E2WMError(f"{where}: zero_optimization must be an object")
    if cfg.deepspeed.zero_stage is not None:
        zero["stage"] = cfg.deepspeed.zero_stage
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise E2WMError(f"{where}: zero_optimization.stage: must be 0, 1, 2 or 3, got {stage!r}")
    o = cfg.optim
    gas = gradient_accumulation(cfg, world)
    _own(ds, ("train_batch_size",), o.micro_batch_size * gas * world,
         f"micro × accumulation × world ({o.micro_batch_size} × {gas} × {world})", where)
    _own(ds, ("train_micro_batch_size_per_gpu",), o.micro_batch_size, "optim.micro_batch_size", where)
    _own(ds, ("gradient_accumulation_steps",), gas,
         f"ceil(optim.global_batch_size {o.global_batch_size} / (world {world} × micro {o.micro_batch_size}))", where)
    _own(ds, ("gradient_clipping",), o.grad_clip, "optim.grad_clip", where)
    _own(ds, ("bf16", "enabled"), o.precision == "bf16", "optim.precision", where)
    _own(ds, ("fp16", "enabled"), o.precision == "fp16", "optim.precision", where)
    if o.precision != "fp32" and stage == 0:
        # stage 0's mixed-precision wrapper keeps the fp32 master weights where no checkpoint can reach them
        raise E2WMError(f"deepspeed.zero_stage: optim.precision {o.precision} needs ZeRO stage 1, 2 or 3")
    buckets = {"reduce_bucket_size": 1.0, "allgather_bucket_size": 1.0, "stage3_prefetch_bucket_size": 0.9}
    for key, share in buckets.items():
        if zero.get(key) == "auto":
            if hidden is None:
                zero.pop(key)   # DeepSpeed's default
            else:
                zero[key] = -(-int(share * hidden * hidden) // 64) * 64   # DeepSpeed wants aligned buckets
    if zero.get("stage3_param_persistence_threshold") == "auto":
        if hidden is None:
            zero.pop("stage3_param_persistence_threshold")
        else:
            zero["stage3_param_persistence_threshold"] = 10 * hidden
    ds.setdefault("zero_allow_untested_optimizer", True)
    left = _unfilled(ds)
    if left:
        raise E2WMError(f"{where}: no train-config field fills {', '.join(left)}; give a value")
    offload = zero.get("offload_optimizer")
    if offload is not None and not isinstance(offload, dict):
        raise E2WMError(f"{where}: zero_optimization.offload_optimizer must be an object, got {offload!r}")
    _check_optimizer_and_scheduler(ds, where)
    _check_with_deepspeed(ds, where)
    return ds


def _check_optimizer_and_scheduler(ds: dict, where: str) -> None:
    """The "optimizer" and "scheduler" sections name a type DeepSpeed can build, with a "params" object.
    DeepSpeed looks the type up only when it builds one itself, so its config check passes any name. Its own
    optimizers match in any case; other types are torch.optim (.lr_scheduler) class names, matched exactly."""
    import inspect

    import torch
    from deepspeed.runtime.config import DEEPSPEED_OPTIMIZERS
    from deepspeed.runtime.lr_schedules import VALID_LR_SCHEDULES

    def torch_classes(module, base) -> list[str]:
        return sorted(n for n, c in vars(module).items()
                      if inspect.isclass(c) and issubclass(c, base) and c is not base and not n.startswith("_"))

    optim, lr_scheduler = torch.optim, torch.optim.lr_scheduler
    sections = {"optimizer": ([*DEEPSPEED_OPTIMIZERS], torch_classes(optim, optim.Optimizer), "torch.optim"),
                "scheduler": ([*VALID_LR_SCHEDULES], torch_classes(lr_scheduler, lr_scheduler.LRScheduler),
                              "torch.optim.lr_scheduler")}
    for key, (own, from_torch, module) in sections.items():
        section = ds.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise E2WMError(f"{where}: {key} must be an object with \"type\" and \"params\", got {section!r:.60}")
        kind = section.get("type")
        if not isinstance(kind, str):
            raise E2WMError(f"{where}: {key}.type must be a string naming the {key}, got {kind!r:.60}; known: "
                            f"{', '.join(own)}, or a {module} class")
        # DeepSpeed lower-cases an optimizer's name before looking for its own; scheduler names match exactly
        known = kind.lower() in own if key == "optimizer" else kind in own
        if not known and kind not in from_torch:
            near = [n for n in own + from_torch if n.lower() == kind.lower()]
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise E2WMError(f"{where}: {key}.type {kind!r} is not a type DeepSpeed knows{hint}; known: "
                            f"{', '.join(own)}, or a {module} class ({', '.join(from_torch)})")
        params = section.get("params", {})
        if not isinstance(params, dict):
            raise E2WMError(f"{where}: {key}.params must be an object of {kind}'s arguments, got {params!r:.60}")
        # a valid section would still do nothing: the recipe hands DeepSpeed its own optimizer and sets the
        # learning rate every step, so DeepSpeed ignores both; say so rather than train with something else
        owner = "optim.* (AdamW, or DeepSpeedCPUAdam under optimizer offload)" if key == "optimizer" else \
            "optim.lr, optim.warmup_steps and optim.schedule"
        raise E2WMError(f"{where}: {key} {kind!r}: e2wm sets the {key} from the train config's {owner}, and "
                        f"DeepSpeed would ignore this section; remove it and set those instead")


def _check_with_deepspeed(ds: dict, where: str) -> None:
    """DeepSpeed's own validation of every key (types, unknown keys), before any model loads.
    train_batch_size is left out of the view: DeepSpeed derives it from the world size it sees (1 before
    any process group exists), and it was checked against `world` above."""
    from deepspeed.runtime.config import DeepSpeedConfig

    view = json.loads(json.dumps(ds))
    view.pop("train_batch_size")
    try:
        DeepSpeedConfig(view)
    except (ValueError, AssertionError, KeyError, TypeError) as e:   # pydantic's ValidationError is a ValueError
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
        raise E2WMError(f"{where}: DeepSpeed refuses it: {'; '.join(lines[:3]) or type(e).__name__}") from None


def fisher_config(zero_stage: int, micro_batch: int, precision: str = "fp32") -> dict:
    """The Fisher's engine: fp32 or bf16 weights, one micro-batch a step, and an optimizer that never steps."""
    return {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": zero_stage}, "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": precision == "bf16"}, "steps_per_print": 10**9}
