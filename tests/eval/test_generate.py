"""Batched generation (`e2wm.eval.generate`) against item-by-item decoding, on tiny Llama and GPT-Neo
models with a byte-level BPE tokenizer that holds merged newline tokens ("\\n\\n", " \\n", ...).

A random model would rarely end a line, so each end token's output row is set to 1.05 times another
token's row (and every row scaled up, for clear margins): decoding stops wherever the model would
have emitted that token, after 0 to all of the new tokens."""
import json
import random

import pytest
import torch

from e2wm.bench.eval import old_generate
from e2wm.eval.beam import plain
from e2wm.eval.generate import _generate, bounded, end_ids, generate
from e2wm.pipeline.local_model import train_tokenizer
from e2wm.train.model import tiny_causal_lm

WORDS = "Sue took the cup walked to kitchen put on desk bedroom Walk Switch off television".split()
NEW = 16


def _line(rng, lo=2, hi=14):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    return train_tokenizer(["".join(_line(rng) + rng.choice([".\n", "\n\n ", " \n ", "\n "]) for _ in range(4))
                            for _ in range(60)], 400)


@pytest.fixture(scope="module")
def prompts():
    rng = random.Random(1)
    return [_line(rng) + rng.choice(["", ".", "\n"]) for _ in range(10)]


def _model(kind: str, tok, positions: int = 2048):
    if kind == "llama":
        model = tiny_causal_lm(vocab=len(tok))
        model.config.max_position_embeddings = positions
    else:
        from transformers import GPTNeoConfig, GPTNeoForCausalLM
        torch.manual_seed(0)
        model = GPTNeoForCausalLM(GPTNeoConfig(
            vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
            window_size=16, max_position_embeddings=positions, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    with torch.no_grad():
        w = model.lm_head.weight
        w *= 8
        for j, e in enumerate(sorted(end_ids(tok) - {tok.eos_token_id})):
            w[e] = 1.05 * w[40 + 7 * j]
    return model


@pytest.mark.parametrize("kind", ["llama", "gpt-neo"])
def test_batched_equals_item_by_item_and_the_old_first_lines(kind, tok, prompts):
    assert {"\n", "\n\n", " \n"} <= {tok.decode([i]) for i in end_ids(tok)}   # merged newline tokens exist
    model = _model(kind, tok)
    greedy = generate(model, tok, prompts, 1, NEW, batch=5)   # uneven batches, left-padded
    steps = []
    model.register_forward_pre_hook(lambda *_: steps.append(1))
    assert greedy == generate(model, tok, prompts, 1, NEW, batch=1)
    assert len(steps) < len(prompts) * NEW   # some items stopped at a newline (all run on without the stop)
    assert [p for p, _ in greedy] == [old_generate(model, tok, p, 1, NEW) for p in prompts]
    lengths = {len(tok(p)["input_ids"]) for p, _ in greedy}
    assert len(lengths) > 3 and not any(c for _, c in greedy)   # stops early and late; no prompt cut
    beams = generate(model, tok, prompts, 4, NEW, batch=5)
    assert beams == generate(model, tok, prompts, 4, NEW, batch=1)
    # stop "eos" gives E2WM's eval_gen.py decoding exactly (its reference written here, not ours)
    e2wm_way = generate(model, tok, prompts, 4, NEW, batch=5, newline=False)
    assert [p for p, _ in e2wm_way] == [_e2wm_eval_gen(model, tok, p, 4, NEW) for p in prompts]


def _alone(model, tok, prompt, beams, ends, new=NEW):
    """transformers' `generate` on the prompt alone, the end ids as its eos ids: the first line of its text."""
    from e2wm.eval.metrics import first_line
    ids = bounded(model, tok, prompt, new)[0]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    row = _generate(model, [ids], beams, new, pad, ends)[0]
    row = row[:next((j + 1 for j, t in enumerate(row) if t in ends), len(row))]
    return first_line(tok.decode(row, skip_special_tokens=True))


@pytest.mark.parametrize("kind,beams", [("llama", 2), ("gpt-neo", 4)])
def test_beams_equal_transformers_generate_as_items_leave_the_batch(kind, beams, tok, prompts):
    """Our beam search (items dropped from the batch as they finish, batches sorted by length) gives transformers'
    beam-search text for each prompt alone, newline ends and EOS only; results in input order. (The Llama's
    beams share their prompt's cache, GPT-Neo's have a copy each.)"""
    model = _model(kind, tok)
    assert plain(model)
    fed = []   # tokens fed per decoding step (prompt passes aside): one per beam of each item in the batch
    model.register_forward_pre_hook(lambda m, a, kw: fed.extend(
        [kw["input_ids"].numel()] if kw.get("cache") is not None else []) and None, with_kwargs=True)
    ours = generate(model, tok, prompts, beams, 48, batch=5)
    assert fed[0] == beams * 5 and min(fed) < beams * 5   # all beams of a batch ran, then finished items left
    assert [p for p, _ in ours] == [_alone(model, tok, p, beams, end_ids(tok), 48) for p in prompts]
    eos = frozenset([tok.eos_token_id])
    assert [p for p, _ in generate(model, tok, prompts[:4], 3, NEW, batch=4, newline=False)] == [
        _alone(model, tok, p, 3, eos) for p in prompts[:4]]
    shuffled = prompts[::-1]   # other batches, other padding: the same text per prompt, in input order
    assert generate(model, tok, shuffled, beams, 48, batch=3) == ours[::-1]


def test_greedy_rows_leave_the_batch_and_order_is_kept(tok, prompts):
    model = _model("llama", tok)
    first, rows = [], []   # rows of the prompt passes, and of each decoding step
    model.register_forward_pre_hook(lambda m, a, kw: (rows if kw.get("cache") is not None else first).append(
        kw["input_ids"].shape[0]), with_kwargs=True)
    out = generate(model, tok, prompts, 1, NEW, batch=len(prompts))
    assert sum(first) == len(prompts) and rows == sorted(rows, reverse=True) and rows[-1] < len(prompts)
    assert [p for p, _ in out] == [_alone(model, tok, p, 1, end_ids(tok)) for p in prompts]
    assert generate(model, tok, prompts[::-1], 1, NEW, batch=4) == out[::-1]


def test_a_generation_config_with_more_rules_is_left_to_transformers(tok, prompts):
    model = _model("llama", tok)
    model.generation_config.repetition_penalty = 1.5
    assert not plain(model)
    assert [p for p, _ in generate(model, tok, prompts[:4], 2, NEW, batch=4)] == [
        _alone(model, tok, p, 2, end_ids(tok)) for p in prompts[:4]]


def test_lora_model(tok, prompts):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(1)
    model = get_peft_model(_model("llama", tok), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                            init_lora_weights=False, task_type="CAUSAL_LM")).eval()
    assert [p for p, _ in generate(model, tok, prompts[:5], 4, NEW, batch=5)] == [
        _alone(model, tok, p, 4, end_ids(tok)) for p in prompts[:5]]


def test_bf16_runs(tok, prompts):
    model = _model("llama", tok).to(torch.bfloat16)
    out = generate(model, tok, prompts[:3], 2, NEW, batch=3)
    assert len(out) == 3 and all(isinstance(p, str) for p, _ in out)


@torch.no_grad()
def _e2wm_eval_gen(model, tok, prompt: str, beams: int, new: int) -> str:
    """E2WM's eval_gen.py, one item: beam search over every new token (ending at EOS only), the continuation
    decoded, its first line kept. The prompt ids are training's prefix (e2wm.train.tokens; the README's
    special-tokens row says how that differs from E2WM's own encoding)."""
    from e2wm.train.tokens import prompt_ids
    ids = torch.tensor([prompt_ids(tok, prompt)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=beams, do_sample=False,
                         max_new_tokens=new, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()


@pytest.mark.parametrize("kind", ["llama", "gpt-neo"])
def test_long_prompts_keep_their_last_tokens_and_are_counted(kind, tok, prompts):
    model = _model(kind, tok, positions=48)   # GPT-Neo's learned positions end there: an overrun would fail
    long = " ".join(prompts)
    ids, cut = bounded(model, tok, long, NEW)
    full = tok(long)["input_ids"]
    assert cut and len(full) > 48 and ids == full[-(48 - NEW):]
    assert bounded(model, tok, prompts[0], NEW) == (tok(prompts[0])["input_ids"], False)
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["position_ids"].max().item()), with_kwargs=True)
    out = generate(model, tok, [prompts[0], long, long + " the"], 4, NEW, batch=2)
    assert [c for _, c in out] == [False, True, True] and max(seen) < 48


@pytest.mark.slow
def test_eval_reports_truncated_prompts(tmp_path, capsys):
    from e2wm.cli import main
    row = {"input": "Q: " + "Sue took the cup. " * 200 + "\nA:", "ref": "1"}
    (tmp_path / "long.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "input": "Q: hi\nA:"}) + "\n")
    assert main(["eval", "--suites", str(tmp_path / "long.jsonl"), "--out", str(tmp_path / "out"),
                 "--num-beams", "2", "--max-new-tokens", "16", "--gen-batch", "2"]) == 0
    s = json.loads((tmp_path / "out" / "results.json").read_text())["suites"]["long"]
    assert s["truncated_prompts"] == 1 and s["n"] == 2


def test_llama_beams_share_their_prompt_and_give_the_same_text_as_beams_with_a_copy_each(tok, prompts):
    """A Llama's beams of one prompt run as one row over one copy of the prompt's cache (a 4D ancestry mask;
    GPT-Neo, with its local attention, keeps a row per beam): the same text as a row and a cache copy per beam."""
    from e2wm.eval.beam import beam_search
    ends = end_ids(tok)
    ids = [bounded(_model("llama", tok), tok, p, NEW)[0] for p in prompts]
    for kind, shared in (("llama", True), ("gpt-neo", False)):
        model = _model(kind, tok)
        shapes = []
        model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)) if kw.get(
            "cache") is not None else None, with_kwargs=True)   # the decoding steps (prompt passes aside)
        tree = beam_search(model, ids, 4, NEW, 0, ends)
        assert (shapes[0] == (len(ids), 4)) is shared and (shapes[0] == (4 * len(ids), 1)) is not shared
        assert tree == beam_search(model, ids, 4, NEW, 0, ends, shared_prompt=False)


@pytest.mark.parametrize("beams", [1, 3])
def test_prompt_passes_run_apart_by_length_give_the_same_text(tok, prompts, monkeypatch, beams):
    """With every prompt pass run by length (no padding mask, `prefill` on its causal path: as long prompts on a
    narrow model run), the text is still transformers' `generate` on each prompt alone."""
    from e2wm.eval import prefill
    monkeypatch.setattr(prefill, "GROUPED_FROM", 0)
    model = _model("llama", tok)
    masks = []
    model.register_forward_pre_hook(lambda m, a, kw: masks.append(kw.get("attention_mask")) if kw.get(
        "cache") is None else None, with_kwargs=True)
    ours = generate(model, tok, prompts, beams, NEW, batch=5)
    assert masks and all(m is None for m in masks) and len(masks) > 2   # prompt passes by length, unmasked
    assert [p for p, _ in ours] == [_alone(model, tok, p, beams, end_ids(tok)) for p in prompts]
