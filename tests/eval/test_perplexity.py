"""Perplexity is e^(token-weighted NLL), computed by hand; the sliding window scores each token once."""
import math

import pytest
import torch

from e2wm.eval.perplexity import deal, perplexity, window_nll, windows
from e2wm.train.model import byte_tokenizer, tiny_causal_lm

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Short one.", "x" * 90]


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(seed=2).eval(), byte_tokenizer()


def _nll_sum(model, ids):
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return -sum(float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)), len(ids) - 1


def test_token_weighted_ppl_equals_a_hand_computation(lm):
    model, tok = lm
    total = n = 0
    for t in TEXTS:
        ids = tok(t)["input_ids"]   # the tokenizer's own specials: the byte tokenizer adds no BOS
        s, k = _nll_sum(model, ids[:64])
        total, n = total + s, n + k
    r = perplexity(model, tok, TEXTS, max_length=64)
    assert r["tokens"] == n and r["nll"] == pytest.approx(total / n, abs=1e-5)
    # the interval: documents resampled, each weighed by its tokens (`intervals.ratio` of the hand sums)
    from e2wm.eval.intervals import ratio
    sums = [_nll_sum(model, tok(t)["input_ids"][:64]) for t in TEXTS]
    lo, hi = ratio([s for s, _ in sums], [k for _, k in sums])
    assert r["interval"]["low"] == pytest.approx(math.exp(lo), rel=1e-5)
    assert r["interval"]["high"] == pytest.approx(math.exp(hi), rel=1e-5)
    assert r["interval"]["low"] <= r["ppl"] <= r["interval"]["high"] and r["interval"]["over"] == "documents"
    assert r["ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert r["ppl_base2_e2wm"] == pytest.approx(2 ** (total / n), rel=1e-5)


@pytest.mark.slow
def test_sliding_window_scores_every_token_once(lm):
    model, tok = lm
    full = perplexity(model, tok, TEXTS, max_length=200)
    slid = perplexity(model, tok, TEXTS, max_length=40, stride=20)
    assert slid["tokens"] == full["tokens"]           # each token scored exactly once
    # with a window as long as the text, sliding changes nothing
    assert perplexity(model, tok, TEXTS, max_length=200, stride=50)["nll"] == pytest.approx(full["nll"], abs=1e-6)


def test_deal_gives_each_rank_about_its_share():
    lengths = [64, 64, 64, 17, 40, 2, 64, 33, 64, 9, 51]
    for world in (1, 2, 3, 5):
        owner = deal(lengths, world)
        share = [sum(n for n, r in zip(lengths, owner) if r == k) for k in range(world)]
        assert sum(share) == sum(lengths) and max(share) - min(share) <= max(lengths)
    assert deal([5, 5], 2) == [0, 1] and deal([1, 9, 1], 2) == [1, 0, 1] and deal([], 3) == []


def test_ranks_windows_add_up_to_one_process_exactly(lm):
    """What every rank scores, gathered and added in window order, is the 1-process figure bit for bit
    (the process group's gather is the 2-rank launch's part: tests/eval/test_eval_ranks.py)."""
    model, tok = lm
    one = perplexity(model, tok, TEXTS, max_length=24, stride=16)
    wins = windows(tok, TEXTS, 24, 16)
    assert len(wins) > len(TEXTS) and sum(len(ids) - first for ids, first in wins) == one["tokens"]
    for world in (2, 3):
        owner = deal([len(ids) for ids, _ in wins], world)
        parts = [[(i, window_nll(model, ids, first), len(ids) - first)
                  for i, ((ids, first), r) in enumerate(zip(wins, owner)) if r == rank] for rank in range(world)]
        gathered = sorted(w for p in reversed(parts) for w in p)
        assert math.fsum(s for _, s, _ in gathered) / sum(n for _, _, n in gathered) == one["nll"]
        shares = [sum(n for _, _, n in p) for p in parts]
        assert max(shares) - min(shares) <= 24


def test_bf16_model_scores_in_float32(lm):
    model, tok = lm
    r32 = perplexity(model, tok, TEXTS, max_length=64)
    r16 = perplexity(tiny_causal_lm(seed=2).eval().to(torch.bfloat16), tok, TEXTS, max_length=64)
    assert math.isfinite(r16["nll"]) and r16["nll"] == pytest.approx(r32["nll"], rel=0.05)
