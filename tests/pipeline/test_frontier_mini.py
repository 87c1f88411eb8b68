"""A miniature of `--preset frontier-mini`, every stage from collection to the report: its two key arms
(EWC-LoRA on F / mean F and the uniform-F control) at two λ and two seeds, a snapshot each, on tiny sizes; the
report holds the frontier plot, intervals on every figure, and a verdict for the key pair with its interval."""
import json

import pytest

from e2wm.cli import main
from e2wm.config import read_yaml

MINI = {
    "collect": {"plans": 40, "explorations": 16, "stories": 16, "scenes": 8, "mcts": {"simulations": 300},
                "activities": ["watch tv", "make coffee", "read book", "turn on light", "wash hands",
                               "brush hair"]},
    "data": {"heldout_rows": 6, "eval_fraction": 0.25},
    "model": {"vocab_size": 400, "hidden": 32, "layers": 1, "heads": 2, "pretrain_steps": 10},
    "fisher": {"max_samples": 16, "max_length": 64, "checkpoint_every": 0},
    "train": {"data": {"max_length": 128},
              "optim": {"max_steps": 4, "global_batch_size": 8, "micro_batch_size": 8}},
    "runs": {"ewc_lora": {"regularizer": {"kind": "ewc_lora", "fisher_scale": "mean"}},
             "l2": {"regularizer": {"kind": "ewc_lora", "fisher_scale": "uniform"}}},
    "sweep": {"seeds": [1, 2], "grid": {"ewc_lora": {"regularizer.lam": [0.1, 10]},
                                        "l2": {"regularizer.lam": [0.1, 10]}}, "snapshots": [2]},
    "eval": {"only": ["heldout_plan_generation", "heldout_object_path", "plan_gen"], "limit": 4, "num_beams": 1,
             "max_new_tokens": 8, "ppl_docs": 12, "ppl_max_length": 64},
}


def _merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in (
            "runs", "sweep") else v
    return out


@pytest.mark.slow
def test_a_miniature_frontier_runs_to_a_plot_intervals_and_a_verdict(tmp_path):
    preset, _ = read_yaml(None, "pipeline-frontier-mini.yaml")
    cfg = _merge(preset, {**MINI, "out": str(tmp_path / "run")})
    path = tmp_path / "mini.yaml"
    import yaml
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(path)]) == 0
    report = tmp_path / "run" / "report"
    assert (report / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    points = json.loads((report / "runs.json").read_text())["points"]
    assert len(points) == 1 + 8 * 2   # the base, and 8 runs at their snapshot and their end
    verdict = json.loads((report / "verdict.json").read_text())
    key = next(p for p in verdict["pairs"] if p["key"])
    assert {key["a"], key["b"]} == {"ewc_lora", "l2"} and key["seeds"] == 2
    assert key["sentence"] and (key["mean"] is None or key["low"] <= key["mean"] <= key["high"])
    results = json.loads((tmp_path / "run" / "eval" / "ewc_lora.lam=10.s1" / "results.json").read_text())
    for s in results["suites"].values():
        assert s["n"] >= 1 and s["interval"]["low"] <= s["interval"]["high"]
        assert s["answer_nll"]["low"] <= s["answer_nll"]["mean"] <= s["answer_nll"]["high"]
    md = (report / "report.md").read_text()
    assert "frontier" in md.lower() and "frontier.png" in md
