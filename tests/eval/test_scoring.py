"""Option scores equal log-probabilities computed by hand, one full forward per option."""
import math

import pytest
import torch

from e2wm.eval.scoring import CALIBRATION_PROMPT, choose, option_scores
from e2wm.train.model import byte_tokenizer, tiny_causal_lm

PROMPT = "Question: To make coffee, a possibly related item could be\nAnswer:"
OPTIONS = ["cup", "coffee maker", "a", "bathroom counter"]


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return tiny_causal_lm(seed=1).eval(), byte_tokenizer()


def _by_hand(model, tok, prompt, option):
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    o = tok(" " + option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p + o])).logits[0].double(), -1)
    return sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(o)), len(o)


def test_option_scores_equal_hand_computed_log_probabilities(lm):
    model, tok = lm
    for got, option in zip(option_scores(model, tok, PROMPT, OPTIONS), OPTIONS):
        want, n = _by_hand(model, tok, PROMPT, option)
        assert got.tokens == n and abs(got.logprob - want) <= 1e-5, (option, got, want)


def test_ln_and_un_normalisations(lm):
    model, tok = lm
    best, values = choose(model, tok, PROMPT, OPTIONS, "ln")
    means = [s / n for s, n in (_by_hand(model, tok, PROMPT, o) for o in OPTIONS)]
    assert all(abs(a - b) <= 1e-5 for a, b in zip(values, means)) and best == means.index(max(means))
    best, values = choose(model, tok, PROMPT, OPTIONS, "un")
    calibrated = [_by_hand(model, tok, PROMPT, o)[0] - _by_hand(model, tok, CALIBRATION_PROMPT, o)[0]
                  for o in OPTIONS]
    assert all(abs(a - b) <= 2e-5 for a, b in zip(values, calibrated))   # a difference of two scores
    assert best == calibrated.index(max(calibrated))


def test_un_cancels_what_the_prompt_does_not_change(lm):
    # With the calibration prompt as the prompt, every option's un score is exactly 0: ties go first.
    model, tok = lm
    best, values = choose(model, tok, CALIBRATION_PROMPT, OPTIONS, "un")
    assert values == [0.0] * len(OPTIONS) and best == 0
    assert math.isfinite(sum(choose(model, tok, PROMPT, OPTIONS, "ln")[1]))
    with pytest.raises(ValueError, match="normalisation"):
        choose(model, tok, PROMPT, OPTIONS, "xx")
