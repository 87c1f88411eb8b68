"""One tokenisation rule (`e2wm.train.tokens`) from training to evaluation, for GPT-2- and LLaMA-style
tokenizers (tests/tokenizer_helpers.py) over a build-data output's rows: the trainer's answer tokens
are the tokens evaluation scores, no option gains a word-boundary token, generation starts from what
the trainer saw before the answer, and perplexity and the Fisher see the rule's encoding (a BOS
exactly where the tokenizer adds one)."""
from types import SimpleNamespace

import pytest
import torch
from tokenizer_helpers import ADDS_BOS, FAMILIES, dataset_texts, family, small_llama
from tokenizers import pre_tokenizers

from e2wm.data.eval_format import read_eval
from e2wm.eval.generate import generate
from e2wm.eval.perplexity import perplexity
from e2wm.eval.scoring import option_scores
from e2wm.train.data import encode_rows, read_rows
from e2wm.train.fisher import compute_fisher
from e2wm.train.model import add_lora
from e2wm.train.tokens import encode

pytestmark = pytest.mark.slow   # a tokenizer trained per family: over a minute of fixtures


@pytest.fixture(scope="module")
def texts(built_dataset):
    return dataset_texts(built_dataset)


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request, texts):
    """(family name, its tokenizer trained on the dataset's text, a small Llama over its vocabulary)."""
    tok = family(request.param, texts)
    return request.param, tok, small_llama(tok)


@pytest.fixture(scope="module")
def mc_rows(built_dataset) -> list[dict]:
    """The first rows of every multiple-choice suite."""
    rows = []
    for f in sorted((built_dataset / "eval").glob("*.json*")):
        kind, suite = read_eval(f)
        rows += suite[:6] if kind == "mc" else []
    assert len(rows) > 20
    return rows


@pytest.fixture(scope="module")
def scored(fam, mc_rows) -> list[tuple[dict, list]]:
    """(row, its options' scores) for every multiple-choice row, under this family."""
    _, tok, model = fam
    return [(r, option_scores(model, tok, r["input"], r["answer_list"])) for r in mc_rows]


def _row(prompt: str, ref: str) -> dict:
    return {"task": "t", "input": prompt, "ref": ref, "weight": 1.0}


def _pieces(name: str, option: str) -> str:
    """The option as the family writes it after exactly one word boundary (Ġ or ▁)."""
    if name == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(" " + option)[0][0]
    return "▁" + option.replace(" ", "▁")


class _Recorder(torch.nn.Module):
    """Stands in for a model and records the ids it is given (to generate from, or to score)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.seen = vocab, []
        self.config = SimpleNamespace()   # no position limit: prompts go through whole

    def generate(self, input_ids, **_kw):
        self.seen.append(input_ids[0].tolist())
        return input_ids

    def forward(self, input_ids):
        self.seen.append(input_ids[0].tolist())
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_the_trainer_answer_is_the_scored_option_then_a_newline(fam, scored):
    name, tok, _ = fam
    for r, scores in scored:
        examples, _, _ = encode_rows([_row(r["input"], o) for o in r["answer_list"]], tok, 100_000)
        for o, s, ex in zip(r["answer_list"], scores, examples):
            answer = list(ex.ids[ex.answer_start:])
            assert answer[:s.tokens] == list(s.ids), (name, o)
            assert tok.decode(answer[s.tokens:], skip_special_tokens=True) == "\n", (name, o)


def test_no_option_gains_a_word_boundary_token(fam, scored):
    name, tok, _ = fam
    for r, scores in scored:
        prompt = r["input"]
        for o, s in zip(r["answer_list"], scores):
            assert "".join(tok.convert_ids_to_tokens(list(s.ids))) == _pieces(name, o), (name, o)
            offsets = tok(f"{prompt} {o}", return_offsets_mapping=True)["offset_mapping"]
            assert s.tokens == sum(a >= len(prompt) and b > a for a, b in offsets), (name, o)


def test_llamas_legacy_normaliser_adds_a_boundary_token_to_an_option_encoded_alone(texts, mc_rows):
    # The old way scored the ids of " " + option encoded on their own: under LLaMA's legacy normaliser
    # they start with a spurious "▁" and fail the check the rule's ids pass.
    name = "llama-legacy"
    tok = family(name, texts)
    model = small_llama(tok)
    for r in mc_rows:
        for o, s in zip(r["answer_list"], option_scores(model, tok, r["input"], r["answer_list"])):
            alone = tok.convert_ids_to_tokens(tok(" " + o, add_special_tokens=False)["input_ids"])
            assert alone[0] == "▁" and len(alone) == s.tokens + 1 and "".join(alone) != _pieces(name, o)
            assert "".join(tok.convert_ids_to_tokens(list(s.ids))) == _pieces(name, o)


def test_generation_starts_from_what_the_trainer_saw_before_the_answer(fam, built_dataset, mc_rows):
    name, tok, _ = fam
    rows = read_rows(str(built_dataset / "train")) + [_row(r["input"], r["answer"]) for r in mc_rows]
    examples, _, _ = encode_rows(rows, tok, 100_000)
    spy = _Recorder(len(tok))
    generate(spy, tok, [r["input"] for r in rows], 1, 1, batch=1)   # batch 1: the spy records row 0
    for r, ex, seen in zip(rows, examples, spy.seen):
        assert seen == list(ex.ids[:ex.answer_start]), (name, r["input"][-40:])
        assert (seen[0] == tok.bos_token_id) == ADDS_BOS[name]


def test_perplexity_and_the_fisher_see_the_rules_encoding(fam, texts):
    name, tok, _ = fam
    docs = texts[:6]
    want = [tok(d, truncation=True, max_length=48)["input_ids"] for d in docs]   # the tokenizer's own specials
    assert encode(tok, docs, 48) == want
    assert all((ids[0] == tok.bos_token_id) == ADDS_BOS[name] for ids in want)
    spy = _Recorder(len(tok))
    perplexity(spy, tok, docs, max_length=48)
    assert spy.seen == want
    _, meta = compute_fisher(add_lora(small_llama(tok)), docs, tok, max_length=48, micro_batch=2)
    assert int(meta["samples"]) == len(docs) and int(meta["tokens"]) == sum(len(ids) - 1 for ids in want)
