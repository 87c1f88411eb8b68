"""Perplexity on general text: how much of the base model's language the tuning kept.

Token-weighted: the NLL of every scored token summed over all documents, divided by their number,
then e^NLL. E2WM's `eval_ppl.py` printed 2^NLL of a natural-log loss; that figure is returned
beside it (`ppl_base2_e2wm`) only to compare with E2WM's numbers. Documents are encoded by the
shared rule (`e2wm.train.tokens`: a BOS only where the tokenizer adds one). A document longer than
`max_length` tokens is truncated (E2WM: 800), or, with `stride`, scored by a sliding window that
advances `stride` tokens and scores only the tokens new to each window.

Under torchrun / deepspeed the windows (one a document when truncating, several with `stride`) are
dealt out over the ranks, the longest first to the rank with the fewest tokens so far, so each
rank runs about 1/world of the tokens through the model. Each window's NLL sum (float64) and token
count are gathered on every rank and added in window order (`math.fsum`), and a window is scored
alone (one forward, no padding) whichever rank gets it, so any number of ranks gives the figure of
one process bit for bit. Log-softmax is taken in float32 whatever the model's dtype. The perplexity's 95%
interval (`interval`) is the percentile bootstrap over documents of their token-weighted NLL
(`intervals.ratio`), as e^NLL.

Documents come from the corpora `e2wm fisher` reads (`e2wm.train.corpus`); the Fisher takes a
corpus's first documents, so perplexity takes its last ones.
"""
from __future__ import annotations

import heapq
import math

import torch

from e2wm.eval.intervals import ratio, settings
from e2wm.eval.placement import input_device
from e2wm.train.tokens import encode


def windows(tokenizer, texts, max_length: int = 800, stride: int | None = None) -> list[tuple[list[int], int]]:
    """The windows scored, in document order: (ids, first), where ids[first:] are the tokens the window
    scores (the first token of a document has nothing to be predicted from, so first >= 1). Windows
    that score nothing are left out."""
    return [(ids, first) for ids, first, _ in _windows(tokenizer, texts, max_length, stride)]


def _windows(tokenizer, texts, max_length: int, stride: int | None) -> list[tuple[list[int], int, int]]:
    """`windows`, each with the index of its document."""
    out = []
    for doc, ids in enumerate(encode(tokenizer, texts, max_length if stride is None else None)):
        if stride is None:
            spans = [(0, len(ids), 1)]
        else:
            spans, start, scored_to = [], 0, 1
            while True:
                end = min(start + max_length, len(ids))
                spans.append((start, end, scored_to))
                scored_to = end
                if end == len(ids):
                    break
                start += stride
        out += [(ids[a:b], max(s - a, 1), doc) for a, b, s in spans if b - a >= 2 and s < b]
    return out


def deal(lengths: list[int], world: int) -> list[int]:
    """The rank of each window: longest first (ties in window order) to the rank with the fewest tokens
    so far (ties to the lowest rank), so the ranks' shares of tokens differ by at most one window's."""
    ranks = [0] * len(lengths)
    load = [(0, r) for r in range(world)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        tokens, r = heapq.heappop(load)
        ranks[i] = r
        heapq.heappush(load, (tokens + lengths[i], r))
    return ranks


@torch.no_grad()
def window_nll(model, ids: list[int], first: int) -> float:
    """The NLL (nats, summed in float64) of ids[first:] given what precedes each, one forward on the
    model's device; log-softmax in float32."""
    x = torch.tensor([ids], device=input_device(model))
    logp = torch.log_softmax(model(x).logits[0, first - 1:-1].float(), -1)
    return float(-logp.gather(1, x[0, first:, None]).double().sum())


def perplexity(model, tokenizer, texts, max_length: int = 800, stride: int | None = None,
               rank: int = 0, world: int = 1, log=None) -> dict:
    """The corpus's token-weighted perplexity; under several ranks (a process group exists), each scores
    the windows `deal` gives it and every rank returns the same dict. `log` (if given) is told each
    rank's share when world > 1."""
    wins = _windows(tokenizer, texts, max_length, stride)
    owner = deal([len(ids) for ids, _, _ in wins], world)
    mine = [(i, window_nll(model, ids, first), len(ids) - first)
            for i, ((ids, first, _), r) in enumerate(zip(wins, owner)) if r == rank]
    if world > 1:
        import torch.distributed as dist
        parts = [None] * world
        dist.all_gather_object(parts, mine)
        if log is not None:
            shares = ", ".join(f"rank {r}: {sum(n for _, _, n in p)} tokens in {len(p)} windows"
                               for r, p in enumerate(parts))
            log(f"  perplexity dealt over {world} ranks ({shares})")
        mine = [w for p in parts for w in p]
    mine.sort()
    count = sum(n for _, _, n in mine)
    nll = math.fsum(s for _, s, _ in mine) / count if count else float("nan")
    per_doc: dict[int, list] = {}   # document -> [NLL sum, tokens], for the interval over documents
    for i, s, n in mine:
        acc = per_doc.setdefault(wins[i][2], [0.0, 0])
        acc[0] += s
        acc[1] += n
    ci = ratio([v[0] for v in per_doc.values()], [v[1] for v in per_doc.values()]) if per_doc else None
    interval = None if ci is None else {"low": math.exp(ci[0]), "high": math.exp(ci[1]), "over": "documents",
                                        **settings()}
    return {"tokens": count, "documents": len(texts), "nll": nll, "ppl": math.exp(nll), "interval": interval,
            "ppl_base2_e2wm": 2 ** nll, "max_length": max_length, "stride": stride}
