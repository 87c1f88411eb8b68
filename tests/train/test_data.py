"""Training data: rows in, answer masks from one tokenisation, truncation, global batches (shuffled or length-grouped),
dealt to any world size."""
import json

import numpy as np
import pytest
import torch

from e2wm.config import build
from e2wm.errors import E2WMError
from e2wm.train.config import TrainConfig, gradient_accumulation
from e2wm.train.data import Example, GlobalBatches, collate, deal, encode_rows, read_rows
from e2wm.train.model import byte_tokenizer


def _bpe_tokenizer(bos: bool):
    """A small byte-level BPE trained here, whose merges cross the prompt/answer joint (" Walk")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["Q: How to cook?\nA: Walk to kitchen. Walk to stove.\n"] * 50,
                           trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


ROW = {"task": "plan_generation", "input": "Q: How to cook?\nA:", "ref": "Walk to kitchen. Walk to stove.",
       "weight": 1.0}


@pytest.mark.parametrize("tok", [byte_tokenizer(), _bpe_tokenizer(False), _bpe_tokenizer(True)],
                         ids=["bytes", "bpe", "bpe+bos"])
def test_answer_tokens_are_exactly_the_ref(tok):
    (ex,), tasks, truncated = encode_rows([ROW], tok, 800)
    assert tasks == ["plan_generation"] and truncated == 0
    assert tok.decode(ex.ids[ex.answer_start:]) == " " + ROW["ref"] + "\n"       # E2WM: f"{input} {ref}\n"
    assert tok.decode(ex.ids[:ex.answer_start], skip_special_tokens=True) == ROW["input"]
    assert ex.answer_tokens == len(ex.ids) - ex.answer_start > 0


def test_long_rows_keep_the_answer_and_the_bos_and_lose_the_start_of_the_prompt():
    tok = _bpe_tokenizer(True)
    row = dict(ROW, input="filler words " * 40 + ROW["input"])
    (full,), _, _ = encode_rows([row], tok, 10_000)
    (cut,), _, truncated = encode_rows([row], tok, 24)
    assert truncated == 1 and len(cut.ids) == 24 and cut.ids[0] == tok.bos_token_id
    n_answer = len(full.ids) - full.answer_start
    assert cut.ids[-n_answer:] == full.ids[-n_answer:] and cut.answer_start == 24 - n_answer
    assert cut.ids[1:cut.answer_start] == full.ids[full.answer_start - (cut.answer_start - 1):full.answer_start]


def test_truncation_end_cuts_the_answer_first_as_e2wm_did():
    """E2WM's tokenizer(..., max_length=800, truncation=True) keeps the first 800 tokens of the text."""
    tok = byte_tokenizer()
    row = dict(ROW, input="filler words " * 4 + ROW["input"])
    (full,), _, _ = encode_rows([row], tok, 10_000)
    for width in (full.answer_start + 5, full.answer_start - 3):
        (cut,), _, truncated = encode_rows([row], tok, width, truncation="end")
        assert truncated == 1 and cut.ids == full.ids[:width]
        assert cut.answer_tokens == max(0, width - full.answer_start)   # no answer left: the row teaches nothing


def test_task_weights_override_and_zero_weight_rows_count_no_answer_tokens():
    rows = [ROW, dict(ROW, task="counting", weight=0.7)]
    (a, b), tasks, _ = encode_rows(rows, byte_tokenizer(), 800, {"plan_generation": 0.0})
    assert (a.weight, b.weight) == (0.0, 0.7) and a.answer_tokens == 0 and b.answer_tokens > 0
    assert tasks == ["counting", "plan_generation"] and (a.task, b.task) == (1, 0)


def test_read_rows_from_build_data_jsonl_files_and_errors(tmp_path, built_dataset):
    rows = read_rows(str(built_dataset))
    assert {r["task"] for r in rows} == {"plan_generation", "activity_recognition", "counting", "object_path"}
    assert {r["weight"] for r in rows if r["task"] == "activity_recognition"} == {0.7}
    d = tmp_path / "rows"
    d.mkdir()
    (d / "counting.jsonl").write_text(json.dumps({"input": "a", "ref": "b"}) + "\n")
    (d / "plans.jsonl").write_text(json.dumps({"input": "c", "ref": "d", "task": "plan", "weight": 2}) + "\n\n")
    assert [(r["task"], r["weight"]) for r in read_rows(str(d))] == [("counting", 1.0), ("plan", 2.0)]
    bad = tmp_path / "bad.jsonl"
    for text, message in (('{"input": "a"}\n', r"bad.jsonl:1: row lacks a string \"ref\""),
                          ('{"input": "a", "ref": "b"}\n{oops\n', r"bad.jsonl:2: malformed JSON"),
                          ('{"input": "a", "ref": "b", "weight": -1}\n', r"bad.jsonl:1: \"weight\""),
                          ("", r"no training rows")):
        bad.write_text(text)
        with pytest.raises(E2WMError, match=message):
            read_rows(str(bad))
    with pytest.raises(E2WMError, match="data.path"):
        read_rows(str(tmp_path / "missing"))


@pytest.mark.parametrize("sampling", ["shuffle", "length_grouped"])
def test_global_batches_cover_each_row_once_per_epoch_and_are_a_function_of_seed_and_step(sampling):
    lengths = list(np.random.default_rng(0).integers(5, 500, size=103))
    a, b = (GlobalBatches(lengths, 10, seed=7, sampling=sampling, group_batches=3) for _ in range(2))
    assert a.steps_per_epoch == 11
    for epoch in range(2):
        rows = [a.batch(epoch * 11 + s)[1] for s in range(11)]
        assert sorted(np.concatenate(rows).tolist()) == list(range(103))
        assert all(a.batch(epoch * 11 + s)[0] == epoch for s in range(11))
    assert all(np.array_equal(a.batch(s)[1], b.batch(s)[1]) for s in reversed(range(22)))   # any order
    assert not np.array_equal(a.batch(0)[1], GlobalBatches(lengths, 10, seed=8, sampling=sampling).batch(0)[1])
    assert {len(a.batch(s)[1]) for s in range(11)} == {10, 3}


def test_shuffle_cuts_a_seeded_permutation_into_consecutive_batches():
    lengths = list(range(1, 24))
    g = GlobalBatches(lengths, 4, seed=7, sampling="shuffle")
    for epoch in range(2):
        order = np.concatenate([g.batch(epoch * 6 + s)[1] for s in range(6)])
        assert order.tolist() == np.random.default_rng([7, epoch]).permutation(23).tolist()


def test_shuffle_puts_any_two_rows_together_equally_often_and_grouping_does_not():
    """E2WM's sampling: every pair of rows shares a batch with probability (B - 1) / (n - 1), whatever their
    lengths; length grouping puts the longest rows together every time."""
    n, batch, seeds = 12, 4, 3000
    lengths = list(range(n))

    def together(sampling):
        counts = np.zeros((n, n))
        for seed in range(seeds):
            for rows in GlobalBatches(lengths, batch, seed, sampling, group_batches=3).epoch_batches(0):
                counts[np.ix_(rows, rows)] += 1
        return counts[np.triu_indices(n, 1)] / seeds
    assert np.abs(together("shuffle") - (batch - 1) / (n - 1)).max() < 0.04
    grouped = together("length_grouped")
    assert grouped.max() == 1.0 and grouped.min() == 0.0


def test_length_grouped_batches_are_unchanged():
    """The batches `length_grouped` gave before `data.sampling` existed (a resumed run must see the same)."""
    lengths = list(np.random.default_rng(0).integers(5, 500, size=23))
    g = GlobalBatches(lengths, 4, seed=7, sampling="length_grouped", group_batches=3)
    assert [g.batch(s)[1].tolist() for s in (0, 1, 5, 6, 7)] == \
        [[14, 19, 0, 15], [20, 6, 5], [11, 21, 9, 22], [12, 4, 3], [1, 16, 2, 20]]


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(1).integers(10, 800, size=400)
    grouped = GlobalBatches(list(lengths), 16, seed=0, sampling="length_grouped", group_batches=16)
    shuffled = GlobalBatches(list(lengths), 16, seed=0, sampling="shuffle")

    def padded(g):
        return sum(len(b) * lengths[b].max() for b in g.epoch_batches(0))
    assert padded(grouped) < 0.7 * padded(shuffled)


def test_deal_gives_every_row_one_slot_longest_first_as_evenly_as_it_goes():
    lengths = [5, 50, 20, 40, 10, 30, 60]
    slots = deal(np.arange(7), lengths, micro=2, world=2, accumulation=2)
    assert slots == [[6], [1, 3], [5, 2], [4, 0]]   # slot m * world + r; the larger slots hold the shorter rows
    assert deal(np.arange(3), lengths, micro=2, world=2, accumulation=2) == [[], [1], [2], [0]]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8, 16, 32])
def test_any_world_size_deals_the_same_global_batch(world):
    """E2WM's 20 rows in micro-batches of 5 on any world size: accumulation ceil(20 / (world × 5)), every row once,
    no slot over 5 rows, slot sizes differing by at most one (empty slots become fillers in `collate`)."""
    lengths = list(np.random.default_rng(2).integers(10, 800, size=20))
    cfg = build(TrainConfig, {"optim": {"global_batch_size": 20, "micro_batch_size": 5},
                              "regularizer": {"kind": "none"}})
    accumulation = gradient_accumulation(cfg, world)
    assert accumulation == -(-20 // (world * 5))
    slots = deal(np.arange(20), lengths, micro=5, world=world, accumulation=accumulation)
    assert len(slots) == world * accumulation and sorted(sum(slots, [])) == list(range(20))
    sizes = [len(s) for s in slots]
    assert max(sizes) <= 5 and max(sizes) - min(sizes) <= 1


def test_collate_weights_answers_only_and_fills_empty_slots():
    ex = [Example((1, 2, 3, 4, 5), 3, 0.5, 1), Example((6, 7), 1, 1.0, 0)]
    b = collate(ex, pad_id=0, multiple=8, device="cpu")
    assert b["input_ids"].shape == (2, 8) and b["attention_mask"].sum() == 7
    assert b["weights"][0].tolist() == [0, 0, 0, 0.5, 0.5, 0, 0, 0] and b["weights"][1, 1] == 1.0
    filler = collate([], pad_id=0, multiple=1, device="cpu")
    assert filler["input_ids"].shape == (1, 2) and not filler["weights"].any()
    assert b["tasks"][0, 0] == 1 and b["input_ids"].dtype == torch.long
