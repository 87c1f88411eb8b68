"""Regularisers: `ewc_lora`, `ewc`, `kl`, `none` (Table 2's columns are one `regularizer.kind` apart).

* ``ewc_lora``: λ · Σ_layers Σ_jk F_jk (s · (B A)_jk)², s = alpha / r (plain sum, no ½, as E2WM).
* ``ewc``:      λ · Σ_names Σ F ⊙ (θ − θ*)² for full fine-tuning (θ* = the weights at the start).
* ``kl``:       λ · KL(base ‖ tuned) of next-token distributions on general text, mean per position.
* ``none``:     0.

With replicated parameters (one process, ZeRO-0/1/2) a regulariser is a differentiable scalar added
to the loss. Under ZeRO-3 the penalties are applied as explicit gradients instead (`add_grads`, after
the step's last backward and before the optimizer step): each rank takes the rows of W that its
Fisher partition covers (rank r owns flat indices [r·pn, (r+1)·pn), DeepSpeed's partitioning),
computes the penalty and its gradient there in closed form, and adds them to its gradient partition.
`ewc_lora` gathers only the small A and B for this (never the base weight, never an in×in matrix);
`ewc` works on the fp32 master partition and its own Fisher slice, with no gather at all.
"""
from __future__ import annotations

import torch

from e2wm.errors import E2WMError
from e2wm.train.model import fan_in_fan_out, lora_pairs

KINDS = ("ewc_lora", "ewc", "kl", "none")


def _factors(A: torch.Tensor, B: torch.Tensor, transposed: bool):
    """(lhs, rhs) with W's layout = s · lhs @ rhs: B·A, or (B·A)ᵀ = Aᵀ·Bᵀ for fan-in-fan-out weights."""
    return (A.t(), B.t()) if transposed else (B, A)


ROW_BLOCK = 1 << 23   # elements of ΔW formed at once (32 MiB in fp32), whatever the weight's size


def rows_penalty_grads(A, B, s: float, F_flat, start: int, end: int, transposed: bool = False):
    """(Σ F (s·ΔW)² over flat indices [start, end) of ΔW = B·A, its gradient in A, in B), in closed form:
    with G = ∂/∂(B·A) = 2·s²·F ⊙ (B·A) on those indices (0 elsewhere), ∂A = Bᵀ·G and ∂B = G·Aᵀ. F_flat[0:end-start]
    holds their Fisher values. All three in fp32 at least, whatever the dtype of A and B (under bf16 training
    ΔW, its square and the sum in bf16 would be off by ~4e-3 relative).
    Only the rows of ΔW that hold those indices are formed, a block of rows at a time (`ROW_BLOCK`), so no
    full out×in product is ever alive, and nothing of it is kept."""
    dtype = torch.promote_types(A.dtype, torch.float32)
    with torch.no_grad():
        lhs, rhs = (f.detach().to(dtype) for f in _factors(A, B, transposed))
        g_lhs, g_rhs = torch.zeros_like(lhs), torch.zeros_like(rhs)
        value = torch.zeros((), dtype=dtype, device=lhs.device)
        n_cols = rhs.shape[1]
        step = max(1, ROW_BLOCK // n_cols)
        for a in range(start // n_cols, -(-end // n_cols), step):
            b = min(a + step, -(-end // n_cols))
            lo, hi = max(start, a * n_cols), min(end, b * n_cols)   # the block's flat indices in range
            dw = s * (lhs[a:b] @ rhs)
            grad = torch.zeros_like(dw)
            piece = dw.view(-1)[lo - a * n_cols:hi - a * n_cols]
            f_dw = F_flat[lo - start:hi - start].to(dtype) * piece
            value += (f_dw * piece).sum()
            grad.view(-1)[lo - a * n_cols:hi - a * n_cols] = (2 * s) * f_dw
            g_lhs[a:b] = grad @ rhs.t()
            g_rhs += lhs[a:b].t() @ grad
    g_a, g_b = (g_lhs.t(), g_rhs.t()) if transposed else (g_rhs, g_lhs)
    return value, g_a, g_b


class _RowsPenalty(torch.autograd.Function):
    """The penalty as an autograd node that keeps only its gradients in A and B (A's and B's sizes), not ΔW."""

    @staticmethod
    def forward(ctx, A, B, F_flat, s, start, end, transposed):
        value, g_a, g_b = rows_penalty_grads(A, B, s, F_flat, start, end, transposed)
        ctx.save_for_backward(g_a, g_b)
        ctx.dtypes = A.dtype, B.dtype
        return value

    @staticmethod
    def backward(ctx, grad_out):
        (g_a, g_b), (da, db) = ctx.saved_tensors, ctx.dtypes
        return (grad_out * g_a).to(da), (grad_out * g_b).to(db), None, None, None, None, None


def lora_rows_penalty(A, B, s: float, F_flat, start: int, end: int, transposed: bool = False):
    """Σ F (s·ΔW)² over flat indices [start, end) of ΔW (see `rows_penalty_grads`), differentiable in A and B:
    the backward adds the closed-form gradients, cast to A's and B's dtype."""
    return _RowsPenalty.apply(A, B, F_flat, s, start, end, transposed)


class EWCLoRA:
    """λ · Σ F ⊙ (s·B·A)² over the LoRA pairs, full Fisher tensors, replicated A and B (autograd)."""

    def __init__(self, model, fisher: dict[str, torch.Tensor], lam: float = 1.0):
        self.lam, self.transposed = lam, fan_in_fan_out(model)
        self.pairs = []
        for name, A, B, s in lora_pairs(model):
            if name not in fisher:
                raise E2WMError(f"ewc_lora: the Fisher has no entry for {name}")
            self.pairs.append((A, B, s, fisher[name].detach().reshape(-1)))
        if not self.pairs:
            raise E2WMError("ewc_lora: the model has no LoRA layers")

    def __call__(self, batch=None) -> torch.Tensor:
        return self.lam * sum(lora_rows_penalty(A, B, s, F, 0, F.numel(), self.transposed)
                              for A, B, s, F in self.pairs)


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
        return self.lam * sum((F * (p.float() - star.float()).pow(2)).sum() for p, star, F in self.terms)


class KL:
    """λ · mean over positions of KL(base ‖ tuned); base = the adapter disabled, or a `reference` model.

    `batch` holds input_ids (and attention_mask); `positions`, when given, is the denominator (the
    whole step's count over all ranks, so any split of the batch gives the same gradient)."""

    def __init__(self, model, lam: float = 1.0, reference=None):
        if reference is None and not hasattr(model, "disable_adapter"):
            raise E2WMError("kl: pass reference= (a frozen base model) for a model without adapters")
        self.model, self.lam, self.reference = model, lam, reference

    def __call__(self, batch=None, positions: float | None = None, forward=None) -> torch.Tensor:
        if batch is None:
            raise E2WMError("kl: needs a batch of general text (input_ids)")
        if isinstance(batch, torch.Tensor):
            batch = {"input_ids": batch}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
        forward = forward or self.model
        with torch.no_grad():
            if self.reference is not None:
                base = self.reference(**inputs).logits
            else:
                with self.model.disable_adapter():
                    base = forward(**inputs).logits
        tuned = forward(**inputs).logits
        logp_base, logp_tuned = base.float().log_softmax(-1), tuned.float().log_softmax(-1)
        kl = (logp_base.exp() * (logp_base - logp_tuned)).sum(-1)
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
        denom = mask.sum().clamp_min(1) if positions is None else positions
        return self.lam * (kl * mask).sum() / denom


class NoRegularizer:
    def __init__(self, model):
        self.device = next(model.parameters()).device

    def __call__(self, batch=None) -> torch.Tensor:
        return torch.zeros((), device=self.device)


def make_regularizer(kind: str, model, *, fisher: dict[str, torch.Tensor] | None = None, lam: float = 1.0,
                     reference=None):
    """The autograd form of `kind` (one of KINDS) for replicated parameters; see the module docstring."""
    if kind not in KINDS:
        raise E2WMError(f"unknown regularizer {kind!r}; kinds: {', '.join(KINDS)}")
    if kind in ("ewc_lora", "ewc") and fisher is None:
        raise E2WMError(f"{kind}: needs fisher= (a dict of base-weight name -> Fisher)")
    if kind == "ewc_lora":
        return EWCLoRA(model, fisher, lam)
    if kind == "ewc":
        return EWC(model, fisher, lam, reference)
    if kind == "kl":
        return KL(model, lam, reference)
    return NoRegularizer(model)


# ---------------------------------------------------------------- ZeRO-3: explicit gradients

def _grad_scale(engine) -> float:
    """fp16 gradients wait scaled by the loss scale until the optimizer step; bf16/fp32 are unscaled."""
    return float(getattr(engine.optimizer, "loss_scale", 1.0)) if engine.fp16_enabled() else 1.0


def _add_local_grad(param, full_grad: torch.Tensor, scale: float) -> None:
    """Add this rank's partition of `full_grad` to `param`'s ZeRO-3 gradient partition."""
    import torch.distributed as dist
    from deepspeed.utils import safe_get_local_grad, safe_set_local_grad

    pn = param.ds_tensor.numel()
    flat = full_grad.reshape(-1)
    start = dist.get_rank() * pn
    part = torch.zeros(pn, dtype=torch.float32, device=flat.device)
    piece = flat[start:start + pn]
    part[:piece.numel()] = piece
    safe_set_local_grad(param, safe_get_local_grad(param) + part * scale)


class Zero3EWCLoRA:
    """ewc_lora under ZeRO-3: `fisher` holds each weight's flat partition for this rank."""

    def __init__(self, model, fisher: dict[str, torch.Tensor], lam: float):
        import torch.distributed as dist
        self.lam, self.transposed = lam, fan_in_fan_out(model)
        self.rank = dist.get_rank()
        self.pairs = []
        for name, A, B, s in lora_pairs(model):
            if name not in fisher:
                raise E2WMError(f"ewc_lora: the Fisher has no entry for {name}")
            self.pairs.append((A, B, s, fisher[name]))

    def add_grads(self, engine) -> torch.Tensor:
        """Add the penalty's gradient to A's and B's gradient partitions; returns the penalty."""
        import deepspeed
        import torch.distributed as dist

        params = [p for A, B, *_ in self.pairs for p in (A, B)]
        grads, total = [], torch.zeros((), dtype=torch.float32, device=engine.device)
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            for A, B, s, F in self.pairs:
                n_out, n_in = (A.shape[1], B.shape[0]) if self.transposed else (B.shape[0], A.shape[1])
                pn, n = F.numel(), n_out * n_in
                start, end = min(self.rank * pn, n), min((self.rank + 1) * pn, n)
                local, ga, gb = rows_penalty_grads(A, B, s, F, start, end, self.transposed)
                grads.append((self.lam * ga, self.lam * gb))
                total = total + self.lam * local.float()
        flat = torch.cat([g.reshape(-1) for pair in grads for g in pair] + [total.reshape(1)])
        dist.all_reduce(flat)   # the rows of W are split over ranks: their contributions add up
        scale, offset = _grad_scale(engine), 0
        for (A, B, *_), (ga, gb) in zip(self.pairs, grads):
            for p, g in ((A, ga), (B, gb)):
                _add_local_grad(p, flat[offset:offset + g.numel()].view_as(g), scale)
                offset += g.numel()
        return flat[-1]


class Zero3EWC:
    """ewc under ZeRO-3: F and θ* as this rank's flat partitions of the fp32 master weights."""

    def __init__(self, params: dict[str, torch.nn.Parameter], fisher: dict[str, torch.Tensor], lam: float):
        from deepspeed.utils import safe_get_local_fp32_param
        self.lam = lam
        self.terms = [(params[n], safe_get_local_fp32_param(params[n]).detach().clone(), fisher[n])
                      for n in sorted(fisher)]

    def add_grads(self, engine) -> torch.Tensor:
        import torch.distributed as dist
        from deepspeed.utils import safe_get_local_fp32_param, safe_get_local_grad, safe_set_local_grad

        scale = _grad_scale(engine)
        total = torch.zeros((), dtype=torch.float32, device=engine.device)
        for p, star, F in self.terms:
            diff = safe_get_local_fp32_param(p) - star
            total += (F * diff.pow(2)).sum()
            safe_set_local_grad(p, safe_get_local_grad(p) + (2 * self.lam * scale) * F * diff)
        dist.all_reduce(total)
        return self.lam * total
