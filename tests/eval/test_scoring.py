"""Option scores equal log-probabilities computed naively, each f"{prompt} {option}" through the model
whole, for a byte tokenizer and both tokenizer families (tests/tokenizer_helpers.py), including
tokenizers whose merges cross the prompt/option joint."""
import math

import pytest
import torch
from tokenizer_helpers import FAMILIES, crossing_bpe, dataset_texts, family, small_llama

from e2wm.data.eval_format import read_eval
from e2wm.eval.scoring import CALIBRATION_PROMPT, choose, option_scores
from e2wm.train.model import byte_tokenizer, tiny_causal_lm

PROMPT = "Question: To make coffee, a possibly related item could be\nAnswer:"
OPTIONS = ["cup", "coffee maker", "a", "bathroom counter"]
CROSSING = [("Pick:", ["apple", "one", "art"]), ("k", ["a", "b"])]   # see crossing_bpe


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return tiny_causal_lm(seed=1).eval(), byte_tokenizer()


def _joined(tok, prompt, option):
    """(ids, start) of f"{prompt} {option}" less trailing special tokens; ids[start:], the tokens that
    end after the prompt's last character, are the option's."""
    enc = tok(f"{prompt} {option}", return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    while ids[-1] in tok.all_special_ids:
        ids = ids[:-1]
    return ids, next(i for i, (a, b) in enumerate(offsets) if b > len(prompt) and b > a)


def _by_hand(model, tok, prompt, option):
    """(log-probability, ids) of the option's tokens, from one forward of the whole string."""
    ids, start = _joined(tok, prompt, option)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return sum(float(logp[j - 1, ids[j]]) for j in range(start, len(ids))), ids[start:]


def _agree(model, tok, prompt, options):
    for got, option in zip(option_scores(model, tok, prompt, options), options):
        want, ids = _by_hand(model, tok, prompt, option)
        assert list(got.ids) == ids and abs(got.logprob - want) <= 1e-5, (option, got, want)


def test_option_scores_equal_hand_computed_log_probabilities(lm):
    _agree(*lm, PROMPT, OPTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_option_scores_equal_a_naive_reference_for_both_families(name, built_dataset):
    tok = family(name, dataset_texts(built_dataset))
    model = small_llama(tok, seed=3)
    items = [(PROMPT, OPTIONS), (CALIBRATION_PROMPT, OPTIONS)]
    for f in sorted((built_dataset / "eval").glob("*.jsonl")):   # each multiple-choice suite's first row
        kind, rows = read_eval(f)
        items += [(rows[0]["input"], rows[0]["answer_list"])] if kind == "mc" else []
    for prompt, options in items:
        _agree(model, tok, prompt, options)


@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_option_scores_equal_a_naive_reference_where_merges_cross_the_joint(bos):
    tok = crossing_bpe(bos)
    model = small_llama(tok, seed=4)
    for prompt, options in CROSSING:
        heads = {tuple(ids[:start]) for ids, start in (_joined(tok, prompt, o) for o in options)}
        assert len(heads) > 1, "the options' encodings should differ before the joint"
        _agree(model, tok, prompt, options)


def test_ln_and_un_normalisations(lm):
    model, tok = lm
    picks = choose(model, tok, PROMPT, OPTIONS)
    best, values = picks["ln"]
    means = [s / len(ids) for s, ids in (_by_hand(model, tok, PROMPT, o) for o in OPTIONS)]
    assert all(abs(a - b) <= 1e-5 for a, b in zip(values, means)) and best == means.index(max(means))
    best, values = picks["un"]
    calibrated = [_by_hand(model, tok, PROMPT, o)[0] - _by_hand(model, tok, CALIBRATION_PROMPT, o)[0]
                  for o in OPTIONS]
    assert all(abs(a - b) <= 2e-5 for a, b in zip(values, calibrated))   # a difference of two scores
    assert best == calibrated.index(max(calibrated))


def test_un_cancels_what_the_prompt_does_not_change(lm):
    # With the calibration prompt as the prompt, every option's un score is exactly 0: ties go first.
    model, tok = lm
    best, values = choose(model, tok, CALIBRATION_PROMPT, OPTIONS)["un"]
    assert values == [0.0] * len(OPTIONS) and best == 0
    assert math.isfinite(sum(choose(model, tok, PROMPT, OPTIONS)["ln"][1]))


def test_production_picks_with_choose_and_scores_the_calibration_once_per_option_list(lm, monkeypatch):
    """`e2wm eval`'s per-item picks are `choose`'s, equal to the per-item formula it replaced (both prompts
    scored for every item), and "Answer:" runs once per option list and model, not once per item."""
    from e2wm.eval import harness, scoring
    model, tok = lm
    rows = [{"input": f"Question: item {k}, a related thing is\nAnswer:", "answer_list": opts, "answer": opts[0]}
            for k, opts in enumerate([OPTIONS, OPTIONS[::-1], OPTIONS, ["yes", "no"], OPTIONS[::-1], ["yes", "no"]])]

    def before(row):   # the scorer production used before `choose` (harness._mc_item, uncached)
        scores = option_scores(model, tok, row["input"], row["answer_list"])
        base = option_scores(model, tok, CALIBRATION_PROMPT, row["answer_list"])
        values = {"ln": [s.mean for s in scores], "un": [s.logprob - b.logprob for s, b in zip(scores, base)]}
        return {n: max(range(len(v)), key=lambda i: (v[i], -i)) for n, v in values.items()}

    want = [before(r) for r in rows]
    prompts, real = [], scoring.option_scores
    monkeypatch.setattr(scoring, "option_scores", lambda m, t, p, o: prompts.append(p) or real(m, t, p, o))
    fresh = tiny_causal_lm(seed=1).eval()   # a model of its own: the cache is per model
    fresh.load_state_dict(model.state_dict())
    assert [harness._mc_item(fresh, tok, r) for r in rows] == want
    assert prompts.count(CALIBRATION_PROMPT) == 3 and len(prompts) == len(rows) + 3   # three option lists
    assert [harness._mc_item(fresh, tok, r) for r in rows] == want and prompts.count(CALIBRATION_PROMPT) == 3
