"""Regularisers behind one interface: `reg = make_regularizer(kind, model, ...)`, then `loss + reg(batch)`.

* ``ewc_lora``: λ · Σ_layers Σ_jk F_jk (s · (B A)_jk)², s = alpha / r (plain sum, no ½).
* ``ewc``:      λ · Σ_names Σ F ⊙ (θ − θ*)² for full fine-tuning (θ* frozen at construction).
* ``kl``:       λ · KL(base ‖ tuned) of next-token distributions on a general-text batch, mean per token.
* ``none``:     0.

ZeRO-3 (`world=(rank, world_size)`, `fisher` holding each rank's flat partition): rank r owns flat
indices [r·pn, (r+1)·pn) of W (the last partition zero-padded, as DeepSpeed pads `ds_tensor`).
Only the small A and B are materialised, by calling the LoRA `nn.Linear` modules themselves
(`lora_A(I) = Aᵀ`, `lora_B(I) = Bᵀ`), so DeepSpeed's own module hooks gather them in forward and
again in backward. Each rank computes ΔW on its rows only, multiplies by its Fisher slice, and the
scalar is summed with an autograd-aware all_reduce (`_AllReduceSum`): its backward
sums the upstream gradient over ranks (× world), which DeepSpeed's gradient averaging divides back,
so `engine.backward(penalty)` yields exactly the single-process gradients of the full penalty.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as Fn

from e2wm.errors import E2WMError
from e2wm.train.model import lora_pairs

KINDS = ("ewc_lora", "ewc", "kl", "none")


class Regularizer(Protocol):
    def __call__(self, batch=None) -> torch.Tensor:
        """A differentiable scalar to add to the training loss."""


def _is_zero3(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id") and hasattr(p, "ds_tensor")


def _full_shape(p: torch.Tensor) -> torch.Size:
    return p.ds_shape if _is_zero3(p) else p.shape


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) whose backward is all_reduce(SUM) of the upstream gradient (every rank gets d/dx_r)."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist
        out = x.detach().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class EWCLoRA:
    """λ · Σ F ⊙ (s·B·A)² over the LoRA pairs; full Fisher tensors, or per-rank partitions with `world`."""

    def __init__(self, model, fisher: dict[str, torch.Tensor], lam: float = 1.0, world=None):
        self.lam, self.world = lam, world
        linears = {id(m.weight): m for m in model.modules() if isinstance(m, torch.nn.Linear)}
        self.pairs = []
        for name, A, B, s in lora_pairs(model):
            if name not in fisher:
                raise E2WMError(f"ewc_lora: the Fisher has no entry for {name}")
            self.pairs.append((name, linears[id(A)], linears[id(B)], s, fisher[name].detach()))

    @staticmethod
    def _factors(mod_a, mod_b):
        """(A, B) in full shape, in the autograd graph of the real parameters (ZeRO-3 safe)."""
        A, B = mod_a.weight, mod_b.weight
        if not (_is_zero3(A) or _is_zero3(B)):
            return A, B
        r, n_in = _full_shape(A)
        eye_in = torch.eye(n_in, dtype=A.ds_tensor.dtype, device=A.ds_tensor.device)
        eye_r = torch.eye(r, dtype=B.ds_tensor.dtype, device=B.ds_tensor.device)
        return mod_a(eye_in).t(), mod_b(eye_r).t()

    def local(self) -> torch.Tensor:
        """This rank's share of the penalty, before λ and before the sum over ranks."""
        total = None
        for name, mod_a, mod_b, s, F in self.pairs:
            A, B = self._factors(mod_a, mod_b)
            if self.world is None:
                term = (F.to(A.dtype) * (s * (B @ A)).pow(2)).sum()
            else:
                rank, _ = self.world
                n_out, n_in = B.shape[0], A.shape[1]
                pn = F.numel()
                start, end = rank * pn, min((rank + 1) * pn, n_out * n_in)
                if start >= end:   # a rank holding padding only
                    term = (A.sum() + B.sum()) * 0.0
                else:
                    r0, r1 = start // n_in, -(-end // n_in)
                    dw = (s * (B[r0:r1] @ A)).reshape(-1)[start - r0 * n_in:end - r0 * n_in]
                    term = (F[:end - start].to(dw.dtype) * dw.pow(2)).sum()
            total = term if total is None else total + term
        if total is None:
            raise E2WMError("ewc_lora: the model has no LoRA layers")
        return total

    def __call__(self, batch=None) -> torch.Tensor:
        total = self.local()
        if self.world is not None and self.world[1] > 1:
            total = _AllReduceSum.apply(total)
        return self.lam * total


class EWC:
    """λ · Σ F ⊙ (θ − θ*)² over the Fisher's names (full fine-tuning; full, unpartitioned params)."""

    def __init__(self, model, fisher: dict[str, torch.Tensor], lam: float = 1.0, reference=None):
        params = dict(model.named_parameters())
        missing = sorted(set(fisher) - set(params))
        if missing:
            raise E2WMError(f"ewc: the model has no parameter named {missing[0]}")
        ref = reference if reference is not None else {n: params[n] for n in fisher}
        self.lam = lam
        self.terms = [(params[n], ref[n].detach().clone(), fisher[n].detach()) for n in sorted(fisher)]

    def __call__(self, batch=None) -> torch.Tensor:
        return self.lam * sum((F * (p - star).pow(2)).sum() for p, star, F in self.terms)


class KL:
    """λ · mean over tokens of KL(base ‖ tuned); base = the adapter disabled, or a `reference` model."""

    def __init__(self, model, lam: float = 1.0, reference=None):
        if reference is None and not hasattr(model, "disable_adapter"):
            raise E2WMError("kl: pass reference= (a frozen base model) for a model without adapters")
        self.model, self.lam, self.reference = model, lam, reference

    def __call__(self, batch=None) -> torch.Tensor:
        if batch is None:
            raise E2WMError("kl: needs a batch of general text (input_ids)")
        if isinstance(batch, torch.Tensor):
            batch = {"input_ids": batch}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
        with torch.no_grad():
            if self.reference is not None:
                base = self.reference(**inputs).logits
            else:
                with self.model.disable_adapter():
                    base = self.model(**inputs).logits
        tuned = self.model(**inputs).logits
        logp_base, logp_tuned = base.float().log_softmax(-1), tuned.float().log_softmax(-1)
        kl = (logp_base.exp() * (logp_base - logp_tuned)).sum(-1)
        mask = inputs.get("attention_mask")
        kl = kl.mean() if mask is None else (kl * mask).sum() / mask.sum().clamp_min(1)
        return self.lam * kl


class NoRegularizer:
    def __call__(self, batch=None) -> torch.Tensor:
        return torch.zeros(())


def make_regularizer(kind: str, model, *, fisher: dict[str, torch.Tensor] | None = None, lam: float = 1.0,
                     reference=None, world=None) -> Regularizer:
    """Build the regulariser `kind` (one of KINDS) for `model`; see the module docstring for the forms."""
    if kind not in KINDS:
        raise E2WMError(f"unknown regularizer {kind!r}; kinds: {', '.join(KINDS)}")
    if kind in ("ewc_lora", "ewc") and fisher is None:
        raise E2WMError(f"{kind}: needs fisher= (a dict of base-weight name -> Fisher)")
    if kind == "ewc_lora":
        return EWCLoRA(model, fisher, lam, world)
    if kind == "ewc":
        if world is not None:
            raise E2WMError("ewc: ZeRO-3 partitions are not supported for full fine-tuning; use full tensors")
        return EWC(model, fisher, lam, reference)
    if kind == "kl":
        return KL(model, lam, reference)
    return NoRegularizer()
