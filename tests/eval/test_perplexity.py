"""Perplexity is e^(token-weighted NLL), computed by hand; the sliding window scores each token once."""
import math

import pytest
import torch

from e2wm.eval.perplexity import perplexity
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
