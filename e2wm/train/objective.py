"""E2WM's objective: Σ_t w_t·ℓ_t / #{t : w_t > 0}, over the answer tokens of a group of rows.

`w_t` is the row's task weight on answer tokens and 0 elsewhere, so prompt tokens get no gradient;
the denominator counts answer tokens whatever their weight (E2WM's `run.py`). E2WM normalised each
forward's micro-batch by its own count and averaged the micro-batches (its 1.3B script: one batch of
20 rows; its 6B script: 4 micro-batches of 5). Here the groups are `optim.loss_groups` runs of
consecutive rows of the global batch, as sampled, fixed before the batch is dealt to ranks: the
gradient is the same for any split of the batch over ranks and accumulation steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def row_normalisers(rows, answer_tokens, global_batch: int, groups: int) -> dict[int, float]:
    """{row: 1 / (its group's answer tokens × the number of groups with answer tokens)}: the factor that
    turns Σ w·ℓ over every row into the mean over groups of each group's Σ w·ℓ / #{w > 0}. A group is
    ceil(global_batch / groups) consecutive rows, so an epoch's short last batch has fewer groups."""
    size = math.ceil(global_batch / groups)
    chunks = [list(rows[i:i + size]) for i in range(0, len(rows), size)]
    counts = [sum(answer_tokens[r] for r in c) for c in chunks]
    live = sum(1 for n in counts if n)
    return {r: 1.0 / (n * live) if n else 0.0 for c, n in zip(chunks, counts) for r in c}


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
