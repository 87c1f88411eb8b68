"""Option scores equal log-probabilities computed naively, each f"{prompt} {option}" through the model
whole, for a byte tokenizer and both tokenizer families (tests/tokenizer_helpers.py), including
tokenizers whose merges cross the prompt/option joint; and so do items scored together
(`option_scores_many`: prompts of different lengths, different option counts, uneven batches), on a
Llama and a GPT-Neo (learned positions, local attention narrower than the prompts)."""
import math
import random

import pytest
import torch
from tokenizer_helpers import FAMILIES, crossing_bpe, dataset_texts, family, small_llama

from e2wm.data.eval_format import read_eval
from e2wm.eval.config import EvalConfig
from e2wm.eval.scoring import CALIBRATION_PROMPT, choose, choose_many, option_scores, option_scores_many
from e2wm.pipeline.local_model import train_tokenizer
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


WORDS = "Sue took the cup walked to kitchen put on desk bedroom Walk Switch off television".split()


def _neo(tok, seed: int = 0):
    """A small GPT-Neo: learned positions, and a local layer whose 8-token window is narrower than most prompts."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM
    torch.manual_seed(seed)
    return GPTNeoForCausalLM(GPTNeoConfig(
        vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
        window_size=8, max_position_embeddings=256, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0)).eval()


MODELS = {"llama": small_llama, "gpt-neo": _neo}


@pytest.fixture(scope="module")
def bpe():
    rng = random.Random(0)
    return train_tokenizer([" ".join(rng.choice(WORDS) for _ in range(30)) + ".\n" for _ in range(80)], 300)


def _mixed(seed: int = 2, n: int = 11) -> list[tuple[str, list[str]]]:
    """Prompts of 1 to ~50 tokens, 1 to 5 options of 1 to 3 words each."""
    rng = random.Random(seed)
    words = lambda lo, hi: " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    return [("Sue", ["took", "walked to the kitchen"])] + [
        (words(1, 30) + rng.choice(["", ".", "\nAnswer:"]), [words(1, 3) for _ in range(rng.randint(1, 5))])
        for _ in range(n)]


def _agree_many(model, tok, items, batch, cache_tokens=8192):
    """Items scored `batch` at a time equal the naive reference, and the items scored one at a time."""
    together = option_scores_many(model, tok, items, batch, cache_tokens)
    alone = [option_scores_many(model, tok, [item], 1)[0] for item in items]
    for (prompt, options), got, one in zip(items, together, alone):
        assert len(got) == len(options)
        for g, o, option in zip(got, one, options):
            want, ids = _by_hand(model, tok, prompt, option)
            assert list(g.ids) == ids and abs(g.logprob - want) <= 1e-5, (prompt, option, g, want)
            assert g.ids == o.ids and abs(g.logprob - o.logprob) <= 1e-5, (prompt, option, g, o)


@pytest.mark.parametrize("kind", MODELS)
def test_items_scored_together_equal_a_naive_reference_and_one_at_a_time(kind, bpe):
    model, items = MODELS[kind](bpe, 5), _mixed()
    lengths = {len(bpe(p)["input_ids"]) for p, _ in items}
    assert min(lengths) < 8 < 30 < max(lengths) and len({len(o) for _, o in items}) >= 4
    for batch, cache_tokens in ((4, 8192), (len(items), 8192), (len(items), 120)):   # uneven, all in one, by size
        _agree_many(model, bpe, items, batch, cache_tokens)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_items_scored_together_where_merges_cross_the_joint(kind, bos):
    """Prefixes of 0 tokens (no BOS, "k": the options differ from the first token) beside longer ones."""
    tok = crossing_bpe(bos)
    items = CROSSING + [("Pick: a pear or a plate in a pot Pick:", ["apple", "one", "art", "rope", "a"]),
                        ("k", ["b"]), ("Pick", ["one", "tea"])]
    _agree_many(MODELS[kind](tok, 6), tok, items, 3)


def test_a_peft_model_scores_items_together(lm):
    from peft import LoraConfig, get_peft_model
    model, tok = lm
    torch.manual_seed(7)
    wrapped = get_peft_model(tiny_causal_lm(seed=1), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).eval()
    with torch.no_grad():
        for name, w in wrapped.named_parameters():
            if "lora_B" in name:
                w.normal_(0, 0.5)   # LoRA starts as the identity: make it count
    items = [(PROMPT, OPTIONS), ("Question: where is the cup?\nAnswer:", ["kitchen", "desk"]), ("Hi", ["a"])]
    _agree_many(wrapped, tok, items, 2)
    plain = option_scores(model, tok, PROMPT, OPTIONS)
    assert any(abs(a.logprob - b.logprob) > 1e-3 for a, b in zip(plain, option_scores_many(wrapped, tok, items)[0]))


def test_bf16_scores_are_finite_float32_sums_close_to_float32(lm):
    model, tok = lm
    half = tiny_causal_lm(seed=1).to(torch.bfloat16).eval()
    items = [(PROMPT, OPTIONS), ("Question: where is the cup?\nAnswer:", ["kitchen", "desk"])]
    for full, low in zip(option_scores_many(model, tok, items), option_scores_many(half, tok, items)):
        for a, b in zip(full, low):
            assert math.isfinite(b.logprob) and abs(a.logprob - b.logprob) <= 0.05 * abs(a.logprob) + 0.05


def test_production_picks_with_choose_many_and_scores_the_calibration_once_per_option_list(lm, monkeypatch):
    """`e2wm eval`'s picks (`harness._items`, rows scored `mc_batch` at a time) equal the per-item formula it
    replaced (both prompts scored for every item, one item at a time), and "Answer:" runs once per option
    list and run (the cache `evaluate` makes), not once per item."""
    from e2wm.eval import harness, scoring
    model, tok = lm
    rows = [{"input": f"Question: item {k}, a related thing is\nAnswer:", "answer_list": opts, "answer": opts[0]}
            for k, opts in enumerate([OPTIONS, OPTIONS[::-1], OPTIONS, ["yes", "no"], OPTIONS[::-1], ["yes", "no"]])]

    def before(row):   # the per-item scorer production used before batching (uncached)
        scores = option_scores(model, tok, row["input"], row["answer_list"])
        base = option_scores(model, tok, CALIBRATION_PROMPT, row["answer_list"])
        values = {"ln": [s.mean for s in scores], "un": [s.logprob - b.logprob for s, b in zip(scores, base)]}
        return {n: max(range(len(v)), key=lambda i: (v[i], -i)) for n, v in values.items()}, -values["ln"][0]

    want = [before(r) for r in rows]   # (picks, the correct option's NLL)
    prompts, real = [], scoring.option_scores_many
    monkeypatch.setattr(scoring, "option_scores_many", lambda m, t, items, batch=16, groups=None: prompts.extend(
        p for k, (p, _) in enumerate(items) if groups is None or any(k in g for g in groups)) or real(
        m, t, items, batch, groups=groups))
    cfg, calibration = EvalConfig(mc_batch=4), {}

    def same(got):   # picks equal, prompts not cut, NLLs within float noise of the one-at-a-time values
        return all(p == w[0] and not c and abs(x - w[1]) <= 2e-5 for (p, c, x), w in zip(got, want))
    assert same(harness._items(model, tok, "mc", rows, cfg, 0, 1, calibration))
    assert prompts.count(CALIBRATION_PROMPT) == 3 and len(prompts) == len(rows) + 3   # three option lists
    assert same(harness._items(model, tok, "mc", rows, cfg, 0, 1, calibration))
    assert prompts.count(CALIBRATION_PROMPT) == 3
    assert same(harness._items(model, tok, "mc", rows, cfg, 0, 1)) and prompts.count(CALIBRATION_PROMPT) == 6
    together = choose_many(model, tok, [(r["input"], r["answer_list"]) for r in rows], {}, batch=4)
    for r, got in zip(rows, together):   # the values too, against `choose` (one item at a time)
        one = choose(model, tok, r["input"], r["answer_list"])
        assert all(abs(x - y) <= 2e-5 for n in one for x, y in zip(got[n][1], one[n][1]))


def test_a_prompt_beyond_the_models_positions_loses_its_first_tokens_and_is_counted():
    """A GPT-Neo (learned positions) holding 48 positions scores a 150-token prompt as its last tokens: every option
    equals the naive full forward of the cut string's ids, and `prompts_cut` says which items were cut."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from e2wm.eval.scoring import prompts_cut
    torch.manual_seed(0)
    tok = byte_tokenizer()
    model = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=4,
                                           attention_types=[[["global", "local"], 1]], window_size=16,
                                           max_position_embeddings=48)).eval()
    long_prompt, short_prompt = "Sue took the cup to the kitchen. " * 5, "Where?"
    items = [(long_prompt, ["desk", "kitchen sink"]), (short_prompt, ["desk", "bed"])]
    assert prompts_cut(model, tok, items) == [True, False]
    got = option_scores_many(model, tok, items, batch=2)
    for (prompt, options), scores in zip(items, got):
        for option, score in zip(options, scores):
            ids, start = _joined(tok, prompt, option)
            excess = max(0, max(len(_joined(tok, prompt, o)[0]) for o in options) - 48)
            ids, start = ids[excess:], start - excess
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            want = sum(float(logp[j - 1, ids[j]]) for j in range(start, len(ids)))
            assert abs(score.logprob - want) <= 1e-5 and len(ids) <= 48
