"""Helpers for the training tests: launching ranks on CPU, reading a run's metrics, writing configs."""
import json
import os
import signal
import subprocess
from pathlib import Path

import yaml

from e2wm.train import dist as edist

ROOT = Path(__file__).resolve().parents[2]
# LoRA on q/v alone barely moves a random tiny model; with lm_head as well the loss falls within a few steps
TARGETS = ["q_proj", "v_proj", "lm_head"]


def launch(cmd: list[str], timeout: int = 300, **env) -> subprocess.CompletedProcess:
    """Run a launcher command with the CPU environment (gloo, one thread per rank); on a timeout the
    whole process group goes, ranks included, so a hung collective cannot outlive the test."""
    proc = subprocess.Popen(cmd, env=edist.cpu_env({"PYTHONPATH": str(ROOT), **env}), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s: {' '.join(cmd)}\n{out[-2000:]}\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def check(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    return p


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def with_(cfg: dict, **sections) -> dict:
    """A copy of `cfg` with some sections' keys replaced (`out=...` for top-level keys)."""
    out = json.loads(json.dumps(cfg))
    for key, value in sections.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


PROBE = [[5, 17, 42, 99, 3, 250, 7, 64, 128, 31]]
ZERO3_JOBS = {   # name: (ZeRO stage, config changes); 4 steps each on 2 ranks, in one torchrun launch
    "none_bf16": (3, {"regularizer": {"kind": "none"}, "optim": {"precision": "bf16"}}),
    "kl_z3": (3, {"regularizer": {"kind": "kl", "kl_batch_size": 3, "kl_max_length": 64}}),
    "kl_z2": (2, {"regularizer": {"kind": "kl", "kl_batch_size": 3, "kl_max_length": 64}}),
    "ewc_z3": (3, {"lora": {"enabled": False}, "regularizer": {"kind": "ewc"}, "optim": {"lr": 1e-3}}),
    "ewc_z2": (2, {"lora": {"enabled": False}, "regularizer": {"kind": "ewc"}, "optim": {"lr": 1e-3}}),
    "gc": (3, {"model": {"gradient_checkpointing": True}}),
    "ewc_lora": (3, {}),
}
