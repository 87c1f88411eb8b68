"""CUDA-only: `e2wm eval` on up to 2 GPUs through torchrun gives the same multiple-choice picks as on
one GPU (skipped without a GPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from e2wm.train import dist as edist

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]


def _run(cmd):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}   # let DeepSpeed find CUDA
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    return p.stdout + p.stderr


def test_eval_on_gpus_matches_one_gpu(tmp_path, built_dataset):
    args = ["eval", "--suites", str(built_dataset / "eval"), "--only", "count_qa", "act_recog", "plan_gen",
            "--limit", "6", "--num-beams", "2", "--max-new-tokens", "10"]
    _run([sys.executable, "-m", "e2wm.cli", *args, "--out", str(tmp_path / "one")])
    n = max(1, min(2, torch.cuda.device_count()))
    _run(edist.torchrun_cmd(n, edist.free_port(), "e2wm.cli", [*args, "--out", str(tmp_path / "many")]))
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    many = json.loads((tmp_path / "many" / "results.json").read_text())
    for s in ("count_qa", "act_recog"):
        assert one["suites"][s]["accuracy_by_norm"] == many["suites"][s]["accuracy_by_norm"]


def test_a_model_spread_over_a_gpu_and_host_memory_scores_as_a_replicated_one(tmp_path, built_dataset):
    """--placement spread with a per-device budget of half the weights: part of the model runs from host
    memory (one GPU suffices), and every score equals the replicated model's; with 2 GPUs and no budget
    cap the layers go to both."""
    from e2wm.train.model import byte_tokenizer, tiny_causal_lm
    model_dir = tmp_path / "model"
    model = tiny_causal_lm(hidden=256, layers=6)
    model.save_pretrained(str(model_dir))
    byte_tokenizer().save_pretrained(str(model_dir))
    half_gib = sum(p.numel() * 4 for p in model.parameters()) / 2 / 2**30
    args = ["eval", "--model", str(model_dir), "--suites", str(built_dataset / "eval"), "--only", "count_qa",
            "act_recog", "obj_path", "--limit", "8", "--num-beams", "2", "--max-new-tokens", "10",
            "--precision", "fp32", "--ppl-corpus", "builtin:pydoc", "--ppl-docs", "4", "--ppl-max-length", "128"]
    _run([sys.executable, "-m", "e2wm.cli", *args, "--out", str(tmp_path / "whole")])
    log = _run([sys.executable, "-m", "e2wm.cli", *args, "--placement", "spread", "--device-memory", str(half_gib),
                "--out", str(tmp_path / "spread")])
    assert "spread over this rank's devices" in log and "cpu" in log.split("spread over this rank's devices")[1]
    whole, spread = (json.loads((tmp_path / x / "results.json").read_text()) for x in ("whole", "spread"))
    for s in ("count_qa", "act_recog"):
        assert whole["suites"][s]["accuracy_by_norm"] == spread["suites"][s]["accuracy_by_norm"]
    assert whole["suites"]["obj_path"]["examples"] == spread["suites"]["obj_path"]["examples"]
    assert abs(whole["perplexity"]["nll"] - spread["perplexity"]["nll"]) < 1e-4
    for s in ("count_qa", "act_recog", "obj_path"):   # the host's layers add up in other orders than the GPU's
        a, b = (x["suites"][s]["per_item"]["answer_nll"] for x in (whole, spread))
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4
    if torch.cuda.device_count() >= 2:
        log = _run([sys.executable, "-m", "e2wm.cli", *args, "--placement", "spread", "--out", str(tmp_path / "two")])
        two = json.loads((tmp_path / "two" / "results.json").read_text())
        assert "device 1" in log and two["suites"]["count_qa"]["per_item"]["score"] == \
            whole["suites"]["count_qa"]["per_item"]["score"]
        a, b = (x["suites"]["count_qa"]["per_item"]["answer_nll"] for x in (two, whole))
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4
