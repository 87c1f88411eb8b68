"""Fisher files: atomic safetensors with metadata, and reading one for a training run of any world size.

A Fisher computed on N ranks is stored consolidated (`fisher.safetensors`, full tensors); a ZeRO-3
run on M ranks reads only the rows its partitions cover (`get_slice`), so a rank never holds the
whole Fisher. The metadata's per-weight Σ|W| tells a Fisher of another model from one of this model.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from e2wm.errors import E2WMError

FISHER_FILE = "fisher.safetensors"


def atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, path)  # readers never see a half-written file


def save_fisher(out_dir, tensors: dict[str, torch.Tensor], metadata: dict, name: str = FISHER_FILE) -> Path:
    """Write `tensors` (+ string metadata) to out_dir/name atomically; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(tensors, out / name, metadata)
    return out / name


def fisher_path(path) -> Path:
    p = Path(path)
    return p / FISHER_FILE if p.is_dir() else p


def load_fisher(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a Fisher file, or from out_dir/fisher.safetensors for a directory."""
    from safetensors import safe_open

    with safe_open(str(fisher_path(path)), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})


def shard_name(rank: int, world: int) -> str:
    return f"fisher-rank{rank:03d}-of-{world:03d}.safetensors"


def weight_sums(params: dict[str, torch.Tensor]) -> dict[str, float]:
    """Σ|W| per weight (float64), a fingerprint of the model; ZeRO-3 partitions are summed over ranks."""
    out = {}
    for name, p in params.items():
        if hasattr(p, "ds_tensor"):
            import torch.distributed as dist
            s = p.ds_tensor.detach().double().abs().sum()
            dist.all_reduce(s)
        else:
            s = p.detach().double().abs().sum()
        out[name] = float(s)
    return out


def _flat_range(sl, shape: list[int], start: int, end: int) -> torch.Tensor:
    """Elements [start, end) of the row-major flattening of a stored tensor, reading whole rows only."""
    if len(shape) <= 1:
        return sl[start:end].reshape(-1)
    row = math.prod(shape[1:])
    r0, r1 = start // row, -(-end // row)
    return sl[r0:r1].reshape(-1)[start - r0 * row:end - r0 * row]


def read_for_params(path, params: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """The Fisher for `params` ({base name: parameter}), fp32 on `device`: full tensors, or for
    ZeRO-3 parameters this rank's flat partition (ds_tensor-sized, zero-padded at the end).

    Raises a named E2WMError when the file is unreadable, lacks a weight, has another shape, or
    was computed for another model (Σ|W| differs)."""
    from safetensors import SafetensorError, safe_open

    p = fisher_path(path)
    try:
        fh = safe_open(str(p), framework="pt")
    except (OSError, SafetensorError) as e:
        raise E2WMError(f"regularizer.fisher: {p}: not a readable safetensors file ({e})") from None
    with fh:
        meta, keys = dict(fh.metadata() or {}), set(fh.keys())
        sums = json.loads(meta["weight_sums"]) if "weight_sums" in meta else {}
        mine = weight_sums(params) if sums else {}
        out = {}
        for name, prm in params.items():
            if name not in keys:
                raise E2WMError(f"regularizer.fisher: {p} has no entry for {name} "
                                f"(it covers {meta.get('modules', '?')} of {meta.get('model', '?')})")
            sl = fh.get_slice(name)
            shape = list(sl.get_shape())
            full = list(prm.ds_shape) if hasattr(prm, "ds_shape") else list(prm.shape)
            if shape != full:
                raise E2WMError(f"regularizer.fisher: {p}: {name} has shape {shape}, the model's is {full}")
            if name in sums and not math.isclose(sums[name], mine[name], rel_tol=1e-3):
                raise E2WMError(f"regularizer.fisher: {p} was computed for another model "
                                f"({meta.get('model', '?')}): Σ|{name}| is {sums[name]:.6g} there, "
                                f"{mine[name]:.6g} here")
            if hasattr(prm, "ds_tensor"):
                import torch.distributed as dist
                pn, n = prm.ds_tensor.numel(), math.prod(shape)
                start, end = min(dist.get_rank() * pn, n), min((dist.get_rank() + 1) * pn, n)
                part = torch.zeros(pn, dtype=torch.float32, device=device)
                part[:end - start] = _flat_range(sl, shape, start, end).float().to(device)
                out[name] = part
            else:
                out[name] = sl[:].float().to(device)
        return out
