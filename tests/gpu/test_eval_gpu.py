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
