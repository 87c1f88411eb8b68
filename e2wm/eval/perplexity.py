"""Perplexity on general text: how much of the base model's language the tuning kept.

Token-weighted: the NLL of every scored token summed over all documents, divided by their number,
then e^NLL. E2WM's `eval_ppl.py` printed 2^NLL of a natural-log loss; that figure is returned
beside it (`ppl_base2_e2wm`) only to compare with E2WM's numbers. Documents are encoded by the
shared rule (`e2wm.train.tokens`: a BOS only where the tokenizer adds one). A document longer than
`max_length` tokens is truncated (E2WM: 800), or, with `stride`, scored by a sliding window that
advances `stride` tokens and scores only the tokens new to each window.

Documents come from the corpora `e2wm fisher` reads (`e2wm.train.corpus`); the Fisher takes a
corpus's first documents, so perplexity takes its last ones.
"""
from __future__ import annotations

import math

import torch

from e2wm.train.tokens import encode


@torch.no_grad()
def perplexity(model, tokenizer, texts, max_length: int = 800, stride: int | None = None) -> dict:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for ids in encode(tokenizer, texts, max_length if stride is None else None):
        if stride is None:
            windows = [(0, ids, 1)]
        else:
            windows, start, scored_to = [], 0, 1
            while True:
                end = min(start + max_length, len(ids))
                windows.append((start, ids[start:end], scored_to - start))
                scored_to = end
                if end == len(ids):
                    break
                start += stride
        for start, window, first in windows:
            if len(window) < 2 or first >= len(window):
                continue
            x = torch.tensor([window], device=device)
            logp = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
            target = x[0, 1:]
            nll = -logp.gather(1, target[:, None])[:, 0]
            keep = nll[max(first - 1, 0):]
            total += float(keep.sum())
            count += keep.numel()
    nll = total / count if count else float("nan")
    return {"tokens": count, "documents": len(texts), "nll": nll, "ppl": math.exp(nll),
            "ppl_base2_e2wm": 2 ** nll, "max_length": max_length, "stride": stride}
