"""`--precision` and `--placement` (`e2wm.eval.placement`): weights loaded in the chosen dtype onto their
device, a spread model's devices dealt out between a node's ranks. The spread over real devices is
checked by `tests/gpu/test_eval_gpu.py`."""
import json

import pytest
import torch

from e2wm.cli import main
from e2wm.errors import E2WMError
from e2wm.eval import harness, placement
from e2wm.eval.config import EvalConfig
from e2wm.eval.scoring import option_scores


@pytest.mark.parametrize("count,ranks,expected", [
    (8, 1, [list(range(8))]), (8, 4, [[0, 1], [2, 3], [4, 5], [6, 7]]), (3, 2, [[0], [1]]), (2, 2, [[0], [1]])])
def test_a_nodes_devices_are_dealt_out_between_its_ranks(count, ranks, expected):
    assert [placement.rank_devices(count, r, ranks) for r in range(ranks)] == expected


def test_more_ranks_than_devices_is_one_clear_error():
    with pytest.raises(E2WMError, match="4 ranks on this node but 2 devices"):
        placement.rank_devices(2, 0, 4)


def test_auto_precision_is_fp32_on_cpu_and_the_budget_caps_each_device():
    assert placement.dtype("auto") == torch.float32 and placement.dtype("bf16") == torch.bfloat16
    budget = placement.memory_budget([], 1.5)
    assert set(budget) == {"cpu"} and budget["cpu"] > 0
    cfg = EvalConfig(placement="spread")
    assert placement.device_map(cfg) == {"": torch.device("cpu")}   # CPU: one device, spread is replicate
    assert placement.max_memory(cfg) is None


@pytest.mark.parametrize("name,value", [("precision", "half"), ("placement", "shard")])
def test_unknown_precision_or_placement_is_refused(name, value):
    with pytest.raises(E2WMError, match=f"eval: {name}='{value}'"):
        EvalConfig(**{name: value})


def test_bf16_weights_load_directly_in_bf16_and_score_close_to_fp32(tiny_model_dir, monkeypatch):
    made = []   # every parameter-sized float tensor built while loading: no fp32 copy of the weights
    real = torch.empty

    def watch(*a, **k):
        t = real(*a, **k)
        made.append(t.dtype)
        return t

    monkeypatch.setattr(torch, "empty", watch)
    model, tok = harness.load(EvalConfig(model=str(tiny_model_dir), precision="bf16"))
    monkeypatch.undo()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.float32 not in made
    ref, _ = harness.load(EvalConfig(model=str(tiny_model_dir)))
    assert {p.dtype for p in ref.parameters()} == {torch.float32}
    prompt, options = "Sue took the cup to the kitchen. Where is the cup?", ["kitchen", "desk", "bedroom"]
    low = [s.logprob for s in option_scores(model, tok, prompt, options)]
    full = [s.logprob for s in option_scores(ref, tok, prompt, options)]
    assert low != full and max(abs(a - b) for a, b in zip(low, full)) < 0.05 * max(map(abs, full))


def test_results_record_the_precision(tmp_path, built_dataset):
    args = ["eval", "--suites", str(built_dataset / "eval"), "--only", "count_qa", "--limit", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--precision", "bf16", "--placement", "spread", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    assert (a["precision"], b["precision"]) == ("fp32", "bf16")
