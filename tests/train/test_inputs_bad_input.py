"""Bad inputs that libraries used to turn into tracebacks (issue 21): a saved `datasets` folder that is not what
`datasets` wrote (training data, a Fisher / kl / perplexity corpus), a model folder whose config.json does not
describe its weights, a DeepSpeed JSON naming an optimizer or scheduler DeepSpeed does not know. Each is one
line naming the file and the flag or config key, exit 2, nothing written."""
import json
import shutil
from pathlib import Path

import pytest
import yaml
from run_helpers import tiny_train_config, write_rows

from e2wm.errors import E2WMError

ROWS = [{"task": "t", "input": f"question {i}?", "ref": f"answer {i}", "weight": 1.0} for i in range(8)]
GEN = {"input": "Q: How to make bed?\nA:", "ref": "Walk to bed. Grab pillow."}
STATE = "train/state.json"
ARROW = "train/data-00000-of-00001.arrow"


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _drop_weight(model_dir: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file
    weights = load_file(str(model_dir / "model.safetensors"))
    del weights[name]
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    """Good inputs and their spoilt copies; the cases below name them relative to the workspace (WS/)."""
    import datasets
    datasets.disable_progress_bars()
    w = tmp_path_factory.mktemp("inputs-bad-input")
    rows = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                                 "eval": datasets.Dataset.from_list(ROWS[:2])})
    rows.save_to_disk(str(w / "rows"))
    texts = datasets.Dataset.from_list([{"text": f"general text number {i}"} for i in range(6)])
    texts.save_to_disk(str(w / "texts"))
    datasets.DatasetDict({"train": texts}).save_to_disk(str(w / "texts-dict"))

    def spoil(src: str, name: str, rel: str, data) -> None:
        shutil.copytree(w / src, w / name)
        target = w / name / rel
        if callable(data):
            data(target)
        else:
            target.write_bytes(data if isinstance(data, bytes) else data.encode())

    arrow = (w / "rows" / ARROW).read_bytes()
    spoil("rows", "rows-dict-malformed", "dataset_dict.json", '{"splits": ["train",')
    spoil("rows", "rows-dict-splits-int", "dataset_dict.json", '{"splits": 5}')
    spoil("rows", "rows-dict-a-list", "dataset_dict.json", '["train"]')
    spoil("rows", "rows-dict-split-missing", "dataset_dict.json", '{"splits": ["train", "test"]}')
    spoil("rows", "rows-dict-split-escapes", "dataset_dict.json", '{"splits": ["../texts"]}')
    spoil("rows", "rows-state-malformed", STATE, "{garbage")
    spoil("rows", "rows-state-files-int", STATE, lambda p: _edit_json(p, _data_files=5))
    spoil("rows", "rows-state-file-missing", STATE, lambda p: _edit_json(p, _data_files=[{"filename": "gone.arrow"}]))
    spoil("rows", "rows-state-split-int", STATE, lambda p: _edit_json(p, _split=5))
    spoil("rows", "rows-info-features-int", "train/dataset_info.json", '{"features": 5}')
    spoil("rows", "rows-info-features-wrong", "train/dataset_info.json", json.dumps(
        {"features": {"input": {"dtype": "int64", "_type": "Value"}, "ref": {"dtype": "string", "_type": "Value"}}}))
    spoil("rows", "rows-arrow-garbage", ARROW, b"not an arrow file at all")
    spoil("rows", "rows-arrow-truncated", ARROW, arrow[: len(arrow) - 40])
    (w / "built").mkdir()                      # an `e2wm build-data` output: the dataset under hf/
    spoil("rows", "built/hf", ARROW, b"\x00" * 16)
    spoil("texts", "texts-state-a-list", "state.json", "[]")
    spoil("texts", "texts-no-info", "dataset_info.json", lambda p: p.unlink())
    spoil("texts", "texts-arrow-garbage", "data-00000-of-00001.arrow", b"garbage")
    spoil("texts-dict", "texts-dict-splits-int", "dataset_dict.json", '{"splits": 5}')
    spoil("texts-dict", "texts-dict-arrow-truncated", "train/data-00000-of-00001.arrow",
          (w / "texts-dict" / "train" / "data-00000-of-00001.arrow").read_bytes()[:100])

    # model folders whose config.json does not describe their weights
    for name, change in {"model-vocab": lambda d: _edit_json(d / "config.json", vocab_size=300),
                         "model-hidden": lambda d: _edit_json(d / "config.json", hidden_size=64),
                         "model-layers": lambda d: _edit_json(d / "config.json", num_hidden_layers=3),
                         "model-no-norm": lambda d: _drop_weight(d, "model.norm.weight"),
                         "model-no-head": lambda d: _drop_weight(d, "lm_head.weight"),
                         "model-weights-garbage": lambda d: (d / "model.safetensors").write_bytes(b"garbage"),
                         "model-tokenizer-garbage": lambda d: (d / "tokenizer.json").write_text("{garbage")}.items():
        shutil.copytree(tiny_model_dir, w / name)
        change(w / name)

    # DeepSpeed JSON
    for name, ds in {"ds-opt-unknown": {"optimizer": {"type": "AdamX", "params": {"lr": 1e-3}}},
                     "ds-opt-case": {"optimizer": {"type": "sgd"}},
                     "ds-opt-no-type": {"optimizer": {"params": {"lr": 1e-3}}},
                     "ds-opt-params-list": {"optimizer": {"type": "AdamW", "params": [1e-3]}},
                     "ds-opt-a-string": {"optimizer": "adamw"},
                     "ds-sched-unknown": {"scheduler": {"type": "Cosine", "params": {}}},
                     "ds-sched-case": {"scheduler": {"type": "warmuplr"}},
                     "ds-sched-params-int": {"scheduler": {"type": "WarmupLR", "params": 3}}}.items():
        (w / f"{name}.json").write_text(json.dumps(ds))

    # train configs, and an eval suite
    good = tiny_train_config(w / "run", tiny_model_dir, write_rows(w / "data.jsonl", ROWS))
    (w / "good.yaml").write_text(yaml.safe_dump(good))
    (w / "suites").mkdir()
    (w / "suites" / "plan_gen.jsonl").write_text(json.dumps(GEN) + "\n")
    return w


def T(*sets):
    """`e2wm train --config WS/good.yaml --set ...`."""
    argv = ["train", "--config", "WS/good.yaml"]
    for s in sets:
        argv += ["--set", s]
    return argv


def KL(corpus):
    return T("regularizer.kind=kl", f"regularizer.corpus=WS/{corpus}", "regularizer.corpus_end=3")


FI = ["fisher", "--max-samples", "3", "--max-length", "24", "--out", "WS/f"]
EV = ["eval", "--suites", "WS/suites", "--out", "WS/e", "--limit", "1", "--max-new-tokens", "2"]

CASES = [
    # ---- a saved dataset as training data (data.path)
    (T("data.path=WS/rows-dict-malformed"), ["data.path", "rows-dict-malformed/dataset_dict.json:1", "malformed JSON"]),
    (T("data.path=WS/rows-dict-splits-int"), ["data.path", "dataset_dict.json", '"splits"', "got 5"]),
    (T("data.path=WS/rows-dict-a-list"), ["data.path", "rows-dict-a-list/dataset_dict.json", "JSON object"]),
    (T("data.path=WS/rows-dict-split-missing"), ["data.path", "dataset_dict.json", "'test'", "not a folder"]),
    (T("data.path=WS/rows-dict-split-escapes"), ["data.path", "'../texts'", "not a folder name"]),
    (T("data.path=WS/rows-state-malformed"), ["data.path", "rows-state-malformed/train/state.json:1"]),
    (T("data.path=WS/rows-state-files-int"), ["data.path", "train/state.json", '"_data_files"']),
    (T("data.path=WS/rows-state-file-missing"), ["data.path", "train/state.json", "gone.arrow"]),
    (T("data.path=WS/rows-state-split-int"), ["data.path", "train/state.json", '"_split"']),
    (T("data.path=WS/rows-info-features-int"), ["data.path", "train/dataset_info.json", '"features"']),
    (T("data.path=WS/rows-info-features-wrong"), ["data.path", "rows-info-features-wrong", "cannot be read"]),
    (T("data.path=WS/rows-arrow-garbage"), ["data.path", "rows-arrow-garbage", "cannot be read"]),
    (T("data.path=WS/rows-arrow-truncated"), ["data.path", "rows-arrow-truncated", "cannot be read"]),
    (T("data.path=WS/built"), ["data.path", "built/hf", "cannot be read"]),
    # ---- a saved dataset as a corpus: e2wm fisher --corpus, train's regularizer.corpus, eval's --ppl-corpus
    ([*FI, "--model", "tiny", "--corpus", "WS/texts-state-a-list"], ["--corpus", "texts-state-a-list/state.json"]),
    ([*FI, "--model", "tiny", "--corpus", "WS/texts-no-info"], ["--corpus", "texts-no-info", "dataset_info.json"]),
    ([*FI, "--model", "tiny", "--corpus", "WS/texts-arrow-garbage"], ["--corpus", "texts-arrow-garbage"]),
    ([*FI, "--model", "tiny", "--corpus", "WS/texts-dict-splits-int"], ["--corpus", "dataset_dict.json", "splits"]),
    (KL("texts-dict-splits-int"), ["regularizer.corpus", "texts-dict-splits-int/dataset_dict.json"]),
    (KL("texts-arrow-garbage"), ["regularizer.corpus", "texts-arrow-garbage", "cannot be read"]),
    ([*EV, "--model", "tiny", "--ppl-corpus", "WS/texts-dict-arrow-truncated"],
     ["--ppl-corpus", "texts-dict-arrow-truncated", "cannot be read"]),
    ([*EV, "--model", "tiny", "--ppl-corpus", "WS/texts-state-a-list"], ["--ppl-corpus", "state.json"]),
    # ---- a model folder whose config.json does not describe its weights, named by the flag the user typed
    (T("model.name_or_path=WS/model-vocab"), ["model.name_or_path", "model-vocab", "vocab_size 300", "259 rows"]),
    ([*FI, "--model", "WS/model-vocab"], ["--model", "model-vocab", "vocab_size 300", "259 rows"]),
    ([*EV, "--model", "WS/model-vocab"], ["--model", "model-vocab", "vocab_size 300"]),
    ([*FI, "--model", "WS/model-hidden"], ["--model", "model-hidden", "config.json does not match", "[259, 32]"]),
    (T("model.name_or_path=WS/model-hidden"), ["model.name_or_path", "model-hidden", "config.json"]),
    ([*EV, "--model", "WS/model-layers"], ["--model", "model-layers", "model.layers.2", "lack"]),
    ([*FI, "--model", "WS/model-no-norm"], ["--model", "model-no-norm", "model.norm.weight"]),
    ([*EV, "--model", "WS/model-no-head"], ["--model", "model-no-head", "lm_head.weight"]),
    ([*EV, "--model", "WS/model-weights-garbage"], ["--model", "model-weights-garbage"]),
    ([*EV, "--model", "WS/model-tokenizer-garbage"], ["--model", "model-tokenizer-garbage"]),
    # ---- DeepSpeed JSON: optimizer and scheduler types DeepSpeed knows, with an object of params
    (T("deepspeed.config=WS/ds-opt-unknown.json"), ["ds-opt-unknown.json", "optimizer.type", "'AdamX'", "adamw", "SGD"]),
    (T("deepspeed.config=WS/ds-opt-case.json"), ["ds-opt-case.json", "optimizer.type", "did you mean SGD"]),
    (T("deepspeed.config=WS/ds-opt-no-type.json"), ["ds-opt-no-type.json", "optimizer.type"]),
    (T("deepspeed.config=WS/ds-opt-params-list.json"), ["ds-opt-params-list.json", "optimizer.params"]),
    (T("deepspeed.config=WS/ds-opt-a-string.json"), ["ds-opt-a-string.json", "optimizer must be an object"]),
    (T("deepspeed.config=WS/ds-sched-unknown.json"), ["ds-sched-unknown.json", "scheduler.type", "WarmupLR", "StepLR"]),
    (T("deepspeed.config=WS/ds-sched-case.json"), ["ds-sched-case.json", "scheduler.type", "did you mean WarmupLR"]),
    (T("deepspeed.config=WS/ds-sched-params-int.json"), ["ds-sched-params-int.json", "scheduler.params"]),
]


@pytest.mark.parametrize("argv, names", CASES, ids=[f"{i:02d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line(ws, cli_error, argv, names):
    def tree():
        return {p.relative_to(ws): p.read_bytes() if p.is_file() else None for p in sorted(ws.rglob("*"))}

    before = tree()
    cli_error([a.replace("WS/", f"{ws}/") for a in argv], names)
    after = tree()
    assert after.keys() == before.keys(), f"bad input wrote {set(after) - set(before)} or removed {set(before) - set(after)}"
    assert [p for p in before if before[p] != after[p]] == []


def test_cases_are_many_and_distinct():
    assert len({tuple(a) for a, _ in CASES}) == len(CASES) >= 20


# ---------------------------------------------------------------- what stays accepted

def test_good_saved_datasets_still_read(ws):
    from e2wm.train.corpus import check_corpus, load_texts
    from e2wm.train.data import read_rows

    assert [r["input"] for r in read_rows(str(ws / "rows"))] == [r["input"] for r in ROWS]
    check_corpus(str(ws / "texts"), "--corpus")
    assert load_texts(str(ws / "texts"), field="--corpus") == load_texts(str(ws / "texts-dict")) \
        == [f"general text number {i}" for i in range(6)]


def test_tied_embeddings_are_not_missing_weights(tmp_path):
    """A model that ties lm_head to the input embedding saves no lm_head: that is not a missing weight."""
    import torch
    from transformers import LlamaForCausalLM

    from e2wm.train.model import load_model, tiny_config
    config = tiny_config()
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(tmp_path))
    model = load_model(str(tmp_path), field="--model")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_known_optimizer_and_scheduler_types_are_refused_as_ignored(ws, tmp_path):
    """A known type (DeepSpeed's own names in any case, torch.optim's exactly; scheduler names exactly) passes
    the type check but would be ignored (the recipe builds the optimizer and sets the lr): one line saying
    which train-config fields own it; an unknown type gets the type line instead."""
    from e2wm.train.config import load_train_config
    from e2wm.train.ds_config import deepspeed_config

    for name, section in {"adamw": {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}},
                          "lamb": {"optimizer": {"type": "LAMB"}}, "sgd": {"optimizer": {"type": "SGD"}},
                          "warmup": {"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 2}}},
                          "steplr": {"scheduler": {"type": "StepLR", "params": {"step_size": 2}}}}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(section))
        cfg = load_train_config(str(ws / "good.yaml"), [f"deepspeed.config={tmp_path / name}.json"])
        key = next(iter(section))
        with pytest.raises(E2WMError, match=f"{key} '{section[key]['type']}': e2wm sets the {key} from the train "
                                            f"config's optim"):
            deepspeed_config(cfg, 1)
    with pytest.raises(E2WMError, match="optimizer.type 'AdamX'"):
        cfg = load_train_config(str(ws / "good.yaml"), [f"deepspeed.config={ws}/ds-opt-unknown.json"])
        deepspeed_config(cfg, 1)
