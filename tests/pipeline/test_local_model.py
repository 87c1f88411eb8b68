"""The pipeline's local model: its pretraining is a run of `e2wm train` on windows of the general corpus
(rows with an empty prompt), byte-identical for one seed, with no scratch left behind."""
from dataclasses import replace

import pytest

from e2wm.errors import E2WMError
from e2wm.pipeline.config import ModelStage
from e2wm.pipeline.local_model import make_local_model, train_tokenizer, windows
from e2wm.train.corpus import load_texts
from e2wm.train.data import encode_rows

SMALL = ModelStage(vocab_size=300, hidden=16, layers=1, heads=2, pretrain_steps=3, pretrain_batch=2,
                   pretrain_length=16)


@pytest.fixture(scope="module")
def docs():
    return load_texts("builtin:pydoc")[:6]


def test_each_window_is_a_row_of_length_tokens_all_in_the_loss(docs):
    tok = train_tokenizer(docs, 300)
    ids = [t for d in docs for t in tok(d)["input_ids"] + [tok.eos_token_id]]
    corpus = [ids[i:i + 32] for i in range(0, len(ids) - 32, 32)]
    rows = windows(tok, docs, 32)
    examples, _, truncated = encode_rows([{**r, "task": "t", "weight": 1.0} for r in rows], tok, 32,
                                         truncation="end")
    assert len(examples) == len(corpus) == truncated   # each row loses its "\n" and the next window's start
    assert all(len(e.ids) == 32 and e.answer_start == 0 for e in examples)
    # a window that starts with a space keeps its tokens exactly: the row's " " before the answer is that space
    spaced = [(e, w) for e, w in zip(examples, corpus) if tok.convert_ids_to_tokens(w[0]).startswith("Ġ")]
    assert spaced and all(list(e.ids) == w for e, w in spaced)
    with pytest.raises(E2WMError, match="pretrain_length 4096"):
        windows(tok, docs[:1], 4096)


def test_same_seed_same_model_bytes_and_no_scratch_left(tmp_path, docs):
    for run in "abc":
        (tmp_path / run).mkdir()
    infos = [make_local_model(SMALL, ["a task row"], docs, tmp_path / run / "model", log=lambda *a: None)
             for run in "ab"]
    assert infos[0] == infos[1] and set(infos[0]) == {"vocab", "parameters", "pretrain_loss"}
    a, b = (tmp_path / run / "model" for run in "ab")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert {"config.json", "tokenizer.json"} <= {f.name for f in a.iterdir()}
    assert not (a / "e2wm-export.json").exists()   # the export's note names the scratch folder, gone
    assert [f.name for f in (tmp_path / "a").iterdir()] == ["model"]
    other = make_local_model(replace(SMALL, seed=1), ["a task row"], docs, tmp_path / "c" / "model", lambda *a: None)
    assert other["pretrain_loss"] != infos[0]["pretrain_loss"]


def test_a_failed_pretraining_leaves_neither_model_nor_scratch(tmp_path, docs, monkeypatch):
    from e2wm.train import recipe

    def fail(cfg):
        raise RuntimeError("trainer died")
    monkeypatch.setattr(recipe, "run", fail)
    with pytest.raises(RuntimeError, match="trainer died"):
        make_local_model(SMALL, [], docs, tmp_path / "model", log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []
