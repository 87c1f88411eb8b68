"""Fisher files: atomic safetensors with metadata, and reading one for a training run of any world size.

A Fisher computed on N ranks is stored consolidated (`fisher.safetensors`, full tensors); a ZeRO-3
run on M ranks reads only the rows its partitions cover (`get_slice`), so a rank never holds the
whole Fisher. The metadata's per-weight Σ|W| tells a Fisher of another model from one of this model.
Every read failure (a directory, a truncated or foreign file, garbage metadata, NaN values) is an
E2WMError naming the file and the field or flag that gave it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from e2wm.errors import E2WMError
from e2wm.files import input_file, settle

FISHER_FILE = "fisher.safetensors"


def atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    """safetensors at `path` through a temporary name, with the user's umask (safetensors writes 0600)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={k: str(v) for k, v in metadata.items()})
        settle(tmp)
        os.replace(tmp, path)  # readers never see a half-written file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_fisher(out_dir, tensors: dict[str, torch.Tensor], metadata: dict, name: str = FISHER_FILE) -> Path:
    """Write `tensors` (+ string metadata) to out_dir/name atomically; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(tensors, out / name, metadata)
    return out / name


def fisher_path(path) -> Path:
    p = Path(path)
    return p / FISHER_FILE if p.is_dir() else p


def open_fisher(path, field: str = "regularizer.fisher"):
    """An open safetensors handle of a Fisher file (or DIR/fisher.safetensors); errors name `field` and the file."""
    from safetensors import SafetensorError, safe_open

    if str(path).strip() == "":
        raise E2WMError(f"{field}: no Fisher given (run `e2wm fisher` first)")
    p = fisher_path(path)
    try:
        input_file(p, "Fisher file (fisher.safetensors)")
    except E2WMError as e:
        raise E2WMError(f"{field}: {e}") from None
    try:
        return safe_open(str(p), framework="pt")
    except (OSError, SafetensorError) as e:
        raise E2WMError(f"{field}: {p}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def fisher_metadata(fh, p, field: str) -> tuple[dict[str, str], dict[str, float]]:
    """(metadata, per-weight Σ|W|) of an open Fisher; garbage in `weight_sums` is a named error."""
    meta = dict(fh.metadata() or {})
    if "weight_sums" not in meta:
        return meta, {}
    try:
        sums = json.loads(meta["weight_sums"])
        if not isinstance(sums, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in sums.values()):
            raise ValueError("not a mapping of names to numbers")
    except ValueError as e:
        raise E2WMError(f"{field}: {p}: malformed weight_sums metadata ({e})") from None
    return meta, sums


def check_fisher(path, field: str = "regularizer.fisher") -> None:
    """Cheap check before heavy work: a readable Fisher file with tensors and sane metadata."""
    p = fisher_path(path)
    with open_fisher(path, field) as fh:
        fisher_metadata(fh, p, field)
        if not list(fh.keys()):
            raise E2WMError(f"{field}: {p}: holds no tensors")


def fisher_keys(path, field: str = "regularizer.fisher") -> list[str]:
    with open_fisher(path, field) as fh:
        return list(fh.keys())


def load_fisher(path, field: str = "fisher") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a Fisher file, or from out_dir/fisher.safetensors for a directory."""
    from safetensors import SafetensorError

    with open_fisher(path, field) as fh:
        try:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except (OSError, SafetensorError) as e:
            raise E2WMError(f"{field}: {fisher_path(path)}: unreadable tensors ({e})") from None


def shard_name(rank: int, world: int) -> str:
    return f"fisher-rank{rank:03d}-of-{world:03d}.safetensors"


def all_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor holding NaN or Infinity, or None."""
    return next((k for k, v in tensors.items() if not bool(torch.isfinite(v).all())), None)


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


def read_for_params(path, params: dict[str, torch.Tensor], device,
                    field: str = "regularizer.fisher") -> dict[str, torch.Tensor]:
    """The Fisher for `params` ({base name: parameter}), fp32 on `device`: full tensors, or for
    ZeRO-3 parameters this rank's flat partition (ds_tensor-sized, zero-padded at the end).

    Raises a named E2WMError when the file is unreadable, lacks a weight, has another shape, holds
    NaN / Infinity or negative values, or was computed for another model (Σ|W| differs)."""
    from safetensors import SafetensorError

    p = fisher_path(path)
    with open_fisher(path, field) as fh:
        meta, sums = fisher_metadata(fh, p, field)
        keys = set(fh.keys())
        mine = weight_sums(params) if sums else {}
        out = {}
        for name, prm in params.items():
            if name not in keys:
                raise E2WMError(f"{field}: {p} has no entry for {name} "
                                f"(it covers {meta.get('modules', '?')} of {meta.get('model', '?')})")
            sl = fh.get_slice(name)
            shape = list(sl.get_shape())
            full = list(prm.ds_shape) if hasattr(prm, "ds_shape") else list(prm.shape)
            if shape != full:
                raise E2WMError(f"{field}: {p}: {name} has shape {shape}, the model's is {full}")
            if name in sums and not math.isclose(sums[name], mine[name], rel_tol=1e-3):
                raise E2WMError(f"{field}: {p} was computed for another model "
                                f"({meta.get('model', '?')}): Σ|{name}| is {sums[name]:.6g} there, "
                                f"{mine[name]:.6g} here")
            try:
                if hasattr(prm, "ds_tensor"):
                    import torch.distributed as dist
                    pn, n = prm.ds_tensor.numel(), math.prod(shape)
                    start, end = min(dist.get_rank() * pn, n), min((dist.get_rank() + 1) * pn, n)
                    part = torch.zeros(pn, dtype=torch.float32, device=device)
                    part[:end - start] = _flat_range(sl, shape, start, end).float().to(device)
                    out[name] = part
                else:
                    out[name] = sl[:].float().to(device)
            except (OSError, SafetensorError, RuntimeError, TypeError) as e:   # a dtype torch cannot read
                raise E2WMError(f"{field}: {p}: cannot read {name} ({str(e).splitlines()[0]})") from None
            if not bool(torch.isfinite(out[name]).all()) or bool((out[name] < 0).any()):
                raise E2WMError(f"{field}: {p}: {name} holds NaN, Infinity or negative values; "
                                f"not a Fisher diagonal")
        return out
