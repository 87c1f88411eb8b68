"""CUDA-only checks of the distributed training paths (skipped without a GPU): a few bf16 steps of `e2wm train`
at ZeRO-2, ZeRO-3 and ZeRO-3 with CPU offload (DeepSpeed's CPU Adam), and `e2wm fisher` at ZeRO-2 and ZeRO-3,
on up to 2 GPUs through the real launchers."""
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


def _gpus() -> int:
    return max(1, min(2, torch.cuda.device_count()))


def _run(cmd):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}   # let DeepSpeed find CUDA
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    return p


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from e2wm.bench.train import synthetic_rows
    f = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(64)))
    return f


@pytest.fixture(scope="module")
def fisher(tmp_path_factory):
    out = tmp_path_factory.mktemp("fisher")
    _run(edist.torchrun_cmd(_gpus(), edist.free_port(), "e2wm.train.fisher_run", [
        "--model", "tiny", "--max-samples", "16", "--max-length", "128", "--zero-stage", "3", "--method", "loop",
        "--out", str(out)]))
    return out   # the reference: one backward per sample


@pytest.mark.parametrize("stage", [2, 3])
def test_fisher_batch_method_on_gpu_matches_the_loop(tmp_path, stage, fisher):
    from e2wm.train.fisher_io import load_fisher
    _run(edist.torchrun_cmd(_gpus(), edist.free_port(), "e2wm.train.fisher_run", [
        "--model", "tiny", "--max-samples", "16", "--max-length", "128", "--zero-stage", str(stage),
        "--out", str(tmp_path)]))
    a, meta = load_fisher(tmp_path)
    b, _ = load_fisher(fisher)
    assert meta["samples"] == "16" and all(torch.isfinite(v).all() for v in a.values())
    assert max(float((a[k] - b[k]).norm() / b[k].norm()) for k in a) < 1e-4


@pytest.mark.parametrize("ds_config", ["zero2", "zero3", "zero3_offload"])
@pytest.mark.parametrize("kind", ["ewc_lora", "none"])
def test_train_bf16_on_gpu(tmp_path, rows, fisher, ds_config, kind):
    p = _run(edist.deepspeed_cmd(_gpus(), edist.free_port(), "e2wm.train", [
        "--set", f"out={tmp_path}", "--set", f"data.path={rows}", "--set", "optim.max_steps=4",
        "--set", "optim.global_batch_size=8", "--set", "optim.micro_batch_size=2",
        "--set", "optim.precision=bf16", "--set", f"deepspeed.config={ds_config}",
        "--set", f"regularizer.kind={kind}", "--set", f"regularizer.fisher={fisher}"]))
    assert "on cuda" in p.stdout
    out = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(out) == 4 and all(0 < r["loss"] < 10 for r in out)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size > 0


def test_bench_train_reports_gpu_figures():
    p = _run([sys.executable, "-m", "e2wm.cli", "bench", "train", "--precision", "bf16", "--steps", "2",
              "--rows", "64", "--no-pad800"])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert all(r[s]["peak_mem_gib"] > 0 and r[s]["ratio_plain"] > 0 for s in ("shuffle", "length_grouped"))
