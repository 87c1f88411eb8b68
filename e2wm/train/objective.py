"""E2WM's objective: Σ_t w_t·ℓ_t / #{t : w_t > 0}, over the answer tokens of the whole global batch.

`w_t` is the row's task weight on answer tokens and 0 elsewhere, so prompt tokens get no gradient;
the denominator counts answer tokens whatever their weight (E2WM's `run.py`). Normalising by the
global batch's count, not each micro-batch's, makes the gradient the same for any split of the
batch over ranks and accumulation steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_token_loss(logits: torch.Tensor, batch: dict, n_tasks: int):
    """(Σ w·ℓ over this micro-batch, per-task Σ ℓ, per-task token counts), fp32.

    Only answer positions go through the fp32 log-softmax, so the full logits are never upcast."""
    w = batch["weights"][:, 1:]
    mask = w > 0
    targets = batch["input_ids"][:, 1:][mask]
    ce = F.cross_entropy(logits[:, :-1][mask].float(), targets, reduction="none")
    tasks = batch["tasks"][:, 1:][mask]
    per_task = torch.zeros(n_tasks, dtype=torch.float32, device=ce.device).index_add_(0, tasks, ce.detach())
    counts = torch.bincount(tasks, minlength=n_tasks).to(torch.float32)
    return (ce * w[mask]).sum(), per_task, counts
