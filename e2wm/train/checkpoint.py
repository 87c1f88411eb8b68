"""Training checkpoints: `RUN/checkpoints/step-NNNNNNNN/`, visible only once complete (`atomic_dir`).

* LoRA runs store their small trainable state consolidated (`trainable.safetensors`: fp32 master
  weights and AdamW moments, gathered with DeepSpeed's `safe_get_full_*`), so a checkpoint written on
  N ranks at any ZeRO stage resumes on M ranks at any stage.
* Full fine-tuning stores DeepSpeed's own partitioned checkpoint (`ds/`); it resumes on the same
  world size (another one needs DeepSpeed's universal-checkpoint conversion, `ds_to_universal`).
* `trainer_state.json` holds the step, the epoch, the world size that wrote it and the config's
  trajectory hash. The sampler's position is the step itself and dropout is reseeded from
  (seed, step, rank) every step, so no RNG state has to travel.
"""
from __future__ import annotations

import re
import shutil
from contextlib import nullcontext
from pathlib import Path

import torch

from e2wm.errors import E2WMError
from e2wm.files import atomic_dir, write_json

STATE = "trainer_state.json"
TRAINABLE = "trainable.safetensors"
MOMENTS = ("exp_avg", "exp_avg_sq")


def step_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def latest(run_dir) -> Path | None:
    """The newest complete step directory under RUN/checkpoints, or None."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if (p / STATE).is_file()) if root.is_dir() else []
    return done[-1] if done else None


def read_state(path, field: str = "--resume") -> dict:
    """The trainer state of step directory `path`, checked; for a LoRA run its tensors' header too.
    Anything else (a missing path, a file, garbage JSON, a truncated safetensors) names `field` and the file."""
    from e2wm.files import input_dir, read_json

    try:
        d = input_dir(path, "checkpoint step directory")
        p = d / STATE
        state = read_json(p, f"checkpoint state ({STATE})")
    except E2WMError as e:
        raise E2WMError(f"{field}: {e}; not a readable e2wm checkpoint") from None
    try:
        if not isinstance(state, dict):
            raise TypeError("not a JSON object")
        for key, kind in (("step", int), ("world_size", int), ("optimizer_steps", int), ("trajectory", str),
                          ("data_sha256", str)):
            if key not in state:
                raise KeyError(f"no {key!r}")
            if not isinstance(state[key], kind) or isinstance(state[key], bool):
                raise TypeError(f"{key} is not {kind.__name__}")
        if state["step"] < 0 or state["world_size"] < 1 or state["optimizer_steps"] < 0:
            raise ValueError("negative step or world size")
        if not isinstance(state.get("lora", False), bool):
            raise TypeError("lora is not bool")
        named = re.fullmatch(r"step-(\d+)", d.name)   # `save` names the folder after the step it holds
        if named and int(named[1]) != state["step"]:
            raise ValueError(f"step {state['step']} in the folder of step {int(named[1])}")
    except (ValueError, KeyError, TypeError) as e:
        raise E2WMError(f"{field}: {p}: not a readable e2wm checkpoint ({e.__class__.__name__}: {e})") from None
    if state.get("lora", (d / TRAINABLE).exists()):
        _check_trainable_header(d / TRAINABLE, field)
    return state


def _check_trainable_header(f: Path, field: str) -> None:
    """Cheap: the safetensors header of trainable.safetensors is whole and names weights with both moments."""
    from safetensors import SafetensorError, safe_open
    from e2wm.files import input_file

    try:
        input_file(f, "checkpoint tensors")
        with safe_open(str(f), framework="pt") as fh:
            keys = set(fh.keys())
    except E2WMError as e:
        raise E2WMError(f"{field}: {e}; not a complete e2wm checkpoint") from None
    except (OSError, SafetensorError) as e:
        raise E2WMError(f"{field}: {f}: unreadable checkpoint tensors ({str(e).splitlines()[0]})") from None
    params = {k[6:] for k in keys if k.startswith("param/")}
    lacking = sorted(f"{m}/{n}" for n in params for m in MOMENTS if f"{m}/{n}" not in keys)
    if not params or lacking:
        raise E2WMError(f"{field}: {f}: not e2wm checkpoint tensors "
                        f"({'no param/ entries' if not params else 'lacks ' + lacking[0]})")


def _inner(engine):
    """The torch optimizer under DeepSpeed's wrapper (ZeRO), or the optimizer itself (stage 0 fp32)."""
    return getattr(engine.optimizer, "optimizer", engine.optimizer)


def _is_wrapped(p) -> bool:
    return hasattr(p, "ds_id") or hasattr(p, "_hp_mapping")


def trainable(engine) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in engine.module.named_parameters() if p.requires_grad}


def optimizer_step_count(engine) -> int:
    states = [s for s in _inner(engine).state.values() if "step" in s]
    return int(states[0]["step"]) if states else 0


def gather_trainable(engine) -> dict[str, torch.Tensor]:
    """{"param/NAME", "exp_avg/NAME", "exp_avg_sq/NAME": full fp32 tensor on CPU}; every rank must call."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    inner, out = _inner(engine), {}
    for name, p in trainable(engine).items():
        if _is_wrapped(p):
            out[f"param/{name}"] = safe_get_full_fp32_param(p)
            for k in MOMENTS:
                out[f"{k}/{name}"] = safe_get_full_optimizer_state(p, k)
        else:
            out[f"param/{name}"] = p.detach()
            for k in MOMENTS:
                out[f"{k}/{name}"] = inner.state[p][k] if k in inner.state.get(p, {}) else torch.zeros_like(p)
    return {k: v.detach().float().cpu().clone(memory_format=torch.contiguous_format) for k, v in out.items()}


def save(engine, run_dir, step: int, state: dict, lora: bool, keep_last: int) -> Path:
    """Write step `step` (every rank calls, into rank 0's `atomic_dir`) and drop all but `keep_last`."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    rank = dist.get_rank()
    final = step_dir(run_dir, step)
    with atomic_dir(final) if rank == 0 else nullcontext() as tmp:
        shared = [tmp]
        dist.broadcast_object_list(shared, src=0)   # the temporary folder's name is rank 0's
        tmp = shared[0]
        if lora:
            tensors = gather_trainable(engine)
            if rank == 0:
                save_file(tensors, str(tmp / TRAINABLE))
        else:
            engine.save_checkpoint(str(tmp), tag="ds", save_latest=False)
        dist.barrier()
        if rank == 0:
            write_json(tmp / STATE, {**state, "step": step, "optimizer_steps": optimizer_step_count(engine),
                                     "lora": lora})
    if rank == 0:
        for old in sorted(final.parent.glob("step-*"))[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_trainable(path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = Path(path) / TRAINABLE
    try:
        tensors = load_file(str(f))
    except (OSError, SafetensorError) as e:
        raise E2WMError(f"{f}: unreadable checkpoint tensors ({str(e).splitlines()[0]})") from None
    for name, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise E2WMError(f"{f}: {name} is not finite floating-point data")
        if name.startswith("param/") and any(tensors.get(f"{m}/{name[6:]}", t).shape != t.shape for m in MOMENTS):
            raise E2WMError(f"{f}: the optimizer moments of {name[6:]} have another shape than its weight")
    return tensors


def load_params_into(model, tensors: dict[str, torch.Tensor], where) -> None:
    """Copy saved trainable weights into the (not yet DeepSpeed-wrapped) model; names must match."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    saved = {k[6:] for k in tensors if k.startswith("param/")}
    if saved != set(params):
        extra, missing = sorted(saved - set(params)), sorted(set(params) - saved)
        raise E2WMError(f"{where}: the checkpoint's trainable weights do not match this model "
                        f"(missing {missing[:2]}, unexpected {extra[:2]})")
    wrong = next((n for n, p in params.items() if tensors[f"param/{n}"].shape != p.shape), None)
    if wrong is not None:
        raise E2WMError(f"{where}: the checkpoint's {wrong} has shape {list(tensors[f'param/{wrong}'].shape)}, "
                        f"this model's is {list(params[wrong].shape)}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[f"param/{n}"].to(p.dtype))


def restore_optimizer(engine, tensors: dict[str, torch.Tensor], optimizer_steps: int, zero_loss) -> None:
    """Put the saved fp32 weights and AdamW moments into DeepSpeed's (possibly partitioned) optimizer.

    AdamW creates its state lazily, so one step with zero gradients and lr 0 (which changes no
    weight) creates it first; `zero_loss()` returns a loss of value 0 from a real forward."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    groups = engine.optimizer.param_groups
    lrs = [g["lr"] for g in groups]
    for g in groups:
        g["lr"] = 0.0
    engine.set_gradient_accumulation_boundary(True)
    engine.backward(zero_loss())
    engine.step()
    for g, lr in zip(groups, lrs):
        g["lr"] = lr
    inner = _inner(engine)
    for name, p in trainable(engine).items():
        if _is_wrapped(p):
            safe_set_full_fp32_param(p, tensors[f"param/{name}"].to(engine.device))
            for k in MOMENTS:
                safe_set_full_optimizer_state(p, tensors[f"{k}/{name}"].to(engine.device), k)
        else:
            for k in MOMENTS:
                inner.state[p][k].copy_(tensors[f"{k}/{name}"])
    for st in inner.state.values():
        if "step" in st:
            st["step"] = st["step"].fill_(optimizer_steps) if torch.is_tensor(st["step"]) else optimizer_steps
    engine.global_steps = optimizer_steps
