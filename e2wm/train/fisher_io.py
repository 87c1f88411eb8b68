"""Fisher files: atomic safetensors with metadata, and reading one for a training run of any world size.

A Fisher computed on N ranks is stored consolidated (`fisher.safetensors`, full tensors); a ZeRO-3
run on M ranks reads only the rows its partitions cover (`get_slice`), so a rank never holds the
whole Fisher. The metadata's per-weight Σ|W| tells a Fisher of another model from one of this model.
Every read failure (a directory, a truncated or foreign file, garbage metadata, NaN values) is an
E2WMError naming the file and the field or flag that gave it.

What the penalty multiplies is a named choice (`SCALES`, `regularizer.fisher_scale`):
* ``e2wm_int8``: what E2WM's `run.py` multiplied. It loaded its saved Fisher with `load_in_8bit=True`;
  bitsandbytes cast each linear weight to fp16 and replaced it with its row-wise absmax int8 codes,
  round(127 · F_jk / max_k |F_jk|), keeping the scale apart where `run.py` never read it
  (../shared/notes/e2wm-paper.md §3.3). E2WM's λ (2 for 1.3B, 0.5 for 6B) is on that 0-127 scale.
  A row is a row of the stored tensor (an nn.Linear's output row); a 1-D tensor is one row; a zero row
  gives zero codes; fp16 flushes tiny values to zero as E2WM's checkpoint did.
* ``raw``: F as computed (its entries are tiny: E2WM's λ on it is plain LoRA).
* ``mean``: F divided by its mean over every covered weight, so λ means the same on any model size.
* ``uniform``: 1 on every covered weight, whatever F says: an L2 pull of s·B·A towards zero. The control
  that isolates the Fisher: at the same λ it has the strength of ``mean`` (λ · mean F = λ for both), so
  any difference between the two is the Fisher's weighting. The file is still read and checked, so the
  control covers exactly the weights the EWC-LoRA run covers.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from e2wm.errors import E2WMError
from e2wm.files import atomic_file, input_file

FISHER_FILE = "fisher.safetensors"
SCALES = ("e2wm_int8", "raw", "mean", "uniform")


def save_fisher(out_dir, tensors: dict[str, torch.Tensor], metadata: dict, name: str = FISHER_FILE) -> Path:
    """Write `tensors` (+ metadata, as text) to out_dir/name atomically (`atomic_file`); returns the path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / name) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={k: str(v) for k, v in metadata.items()})
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


# counts `fisher` writes into the metadata (as text): the least each may be
COUNTS = {"samples": 1, "tokens": 1, "max_length": 1, "world_size": 1}


def fisher_metadata(fh, p, field: str) -> tuple[dict[str, str], dict[str, float]]:
    """(metadata, per-weight Σ|W|) of an open Fisher, checked: a count below its COUNTS minimum or not a
    whole number, a ZeRO stage other than none or 0..3, a Σ|W| that is not a finite number >= 0 is an
    error naming `field`, the file and the key. A key left out is fine (a hand-made Fisher)."""
    meta = dict(fh.metadata() or {})
    for key, least in COUNTS.items():
        v = meta.get(key)
        if v is not None and not (re.fullmatch(r"[+-]?\d+", v.strip()) and int(v) >= least):
            raise E2WMError(f"{field}: {p}: metadata {key} is {v!r}, expected a whole number >= {least}")
    stage = meta.get("zero_stage")
    if stage is not None and stage not in ("none", "0", "1", "2", "3"):
        raise E2WMError(f"{field}: {p}: metadata zero_stage is {stage!r}, expected none or 0..3")
    if "weight_sums" not in meta:
        return meta, {}
    try:
        sums = json.loads(meta["weight_sums"])
        if not isinstance(sums, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 and math.isfinite(v) and v >= 0 for v in sums.values()):
            raise ValueError("not a mapping of names to finite sums >= 0")
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
    """Σ|W| per weight (float64), a fingerprint of the model. A ZeRO-3 parameter's partitions are summed over
    ranks, each over its real elements only: when numel does not divide by the world size, the last
    partitions end in padding that DeepSpeed leaves uninitialised."""
    out = {}
    for name, p in params.items():
        if hasattr(p, "ds_tensor"):
            import torch.distributed as dist
            pn = p.ds_tensor.numel()
            real = max(0, min(pn, p.ds_numel - dist.get_rank() * pn))   # rank r holds [r·pn, (r+1)·pn)
            s = p.ds_tensor.detach().reshape(-1)[:real].double().abs().sum()
            dist.all_reduce(s)
        else:
            s = p.detach().double().abs().sum()
        out[name] = float(s)
    return out


def int8_row_codes(rows: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' row-wise absmax int8 codes of fp16(`rows`) (rows × columns), as fp32: what E2WM's
    penalty multiplied. Rounding is to nearest, ties to even; a zero row gives zeros."""
    x = rows.to(torch.float16).float()
    absmax = x.abs().amax(dim=1, keepdim=True)
    codes = torch.round(x * (127.0 / absmax.clamp_min(torch.finfo(torch.float32).tiny)))
    return torch.where(absmax > 0, codes, torch.zeros_like(codes))


def _flat_range(sl, shape: list[int], start: int, end: int, rows_fn=None) -> torch.Tensor:
    """Elements [start, end) of the row-major flattening of a stored tensor, reading whole rows only;
    `rows_fn` maps the whole rows read (rows × columns, fp32) before the range is cut out of them."""
    rows_fn = rows_fn or (lambda x: x)
    if len(shape) <= 1:
        return rows_fn(sl[:].float().reshape(1, -1)).reshape(-1)[start:end]
    row = math.prod(shape[1:])
    r0, r1 = start // row, -(-end // row)
    return rows_fn(sl[r0:r1].float().reshape(r1 - r0, row)).reshape(-1)[start - r0 * row:end - r0 * row]


def read_for_params(path, params: dict[str, torch.Tensor], device, field: str = "regularizer.fisher",
                    scale: str = "raw") -> dict[str, torch.Tensor]:
    """The Fisher for `params` ({base name: parameter}) on the `scale` the penalty multiplies (see the
    module docstring), fp32 on `device`: full tensors, or for ZeRO-3 parameters this rank's flat
    partition (ds_tensor-sized, zero-padded at the end). A partition's int8 codes come from the whole
    rows it touches, so a row split between ranks gets the codes of the whole row.

    Raises a named E2WMError when the file is unreadable, lacks a weight, has another shape, holds
    NaN / Infinity or negative values, or was computed for another model (Σ|W| differs)."""
    from safetensors import SafetensorError

    if scale not in SCALES:
        raise E2WMError(f"regularizer.fisher_scale: {scale!r} is not one of {', '.join(SCALES)}")
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
            n = math.prod(shape)
            start, end, pn = 0, n, n
            if hasattr(prm, "ds_tensor"):
                import torch.distributed as dist
                pn = prm.ds_tensor.numel()
                start, end = min(dist.get_rank() * pn, n), min((dist.get_rank() + 1) * pn, n)
            try:
                values = _flat_range(sl, shape, start, end, lambda rows: _scaled_rows(rows, scale))
            except (OSError, SafetensorError, RuntimeError, TypeError) as e:   # a dtype torch cannot read
                raise E2WMError(f"{field}: {p}: cannot read {name} ({str(e).splitlines()[0]})") from None
            except ValueError as e:
                raise E2WMError(f"{field}: {p}: {name} {e}") from None
            part = torch.zeros(pn, dtype=torch.float32, device=device)
            part[:end - start] = values.to(device)
            out[name] = part if hasattr(prm, "ds_tensor") else part.view(shape)
        if scale == "mean":
            out = _mean_scaled(out, params, device, f"{field}: {p}")
        return out


def _scaled_rows(rows: torch.Tensor, scale: str) -> torch.Tensor:
    """Whole rows of a stored Fisher, checked, on the `scale` the penalty multiplies (before `mean`)."""
    if not bool(torch.isfinite(rows).all()) or bool((rows < 0).any()):
        raise ValueError("holds NaN, Infinity or negative values; not a Fisher diagonal")
    if scale == "uniform":
        return torch.ones_like(rows)
    if scale != "e2wm_int8":
        return rows
    if not bool(torch.isfinite(rows.to(torch.float16)).all()):
        raise ValueError("exceeds fp16's range, which E2WM's fp16 checkpoint could not hold; "
                         "use regularizer.fisher_scale raw or mean")
    return int8_row_codes(rows)


def _mean_scaled(fisher: dict[str, torch.Tensor], params: dict, device, where: str) -> dict[str, torch.Tensor]:
    """F / (its mean over every covered weight); ZeRO-3 partitions add up over ranks (their padding is 0)."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    for v in fisher.values():
        total += v.double().sum()
    if any(hasattr(prm, "ds_tensor") for prm in params.values()):
        import torch.distributed as dist
        dist.all_reduce(total)
    count = sum(prm.ds_numel if hasattr(prm, "ds_numel") else prm.numel() for prm in params.values())
    mean = float(total) / count
    if not mean > 0:
        raise E2WMError(f"{where}: the Fisher is zero on every covered weight; fisher_scale mean cannot divide by it")
    return {k: (v.double() / mean).float() for k, v in fisher.items()}
