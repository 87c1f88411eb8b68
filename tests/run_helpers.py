"""Running things in tests: the smallest training job the CLI tests start from (a few question/answer rows
and a one-step plain-LoRA config of the tiny model; tests change what they test from here), launching ranks
on CPU, and waiting for a condition."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from e2wm.train import dist as edist

ROOT = Path(__file__).resolve().parents[1]

ROWS = [{"task": "t", "input": f"question {i}?", "ref": f"answer {i}"} for i in range(8)]


def write_rows(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_train_config(out, model, data, **sections) -> dict:
    """A one-step fp32 run (4 rows a step in micro-batches of 2), no regulariser, no checkpoints, no
    TensorBoard; `sections` replace or update (dicts) its top-level keys."""
    cfg = {"out": str(out), "model": {"name_or_path": str(model)},
           "data": {"path": str(data), "max_length": 64}, "regularizer": {"kind": "none"},
           "optim": {"precision": "fp32", "max_steps": 1, "global_batch_size": 4, "micro_batch_size": 2},
           "checkpoint": {"every": 0}, "logging": {"tensorboard": False}}
    for k, v in sections.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


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


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """`predicate()`'s first true value, checked every `interval` s; fails naming `what` after `timeout` s
    (a bound against hanging, not a speed check: keep it generous)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(interval)
    return value
