"""`e2wm bench train` runs its three contenders on E2WM's length mix and prints its ratios."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2wm.bench.train import E2WM_MIX, synthetic_rows
from e2wm.train.dist import cpu_env

ROOT = Path(__file__).resolve().parents[2]


def test_rows_follow_e2wm_length_mix():
    rows = synthetic_rows(2000, seed=0)
    for task, (n, mean, top, answer) in E2WM_MIX.items():
        mine = [len(r["input"]) + len(r["ref"]) + 2 for r in rows if r["task"] == task]
        assert abs(len(mine) / len(rows) - n / 5318) < 0.03
        assert abs(sum(mine) / len(mine) - mean) < 0.06 * mean and max(mine) <= top
        assert all(len(r["ref"]) == answer for r in rows if r["task"] == task)


@pytest.mark.slow
def test_bench_train_prints_ratios():
    p = subprocess.run([sys.executable, "-m", "e2wm.cli", "bench", "train", "--rows", "24", "--steps", "1",
                        "--global-batch", "8", "--micro-batch", "3"], env=cpu_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["bench"] == "train"
    for sampling in ("shuffle", "length_grouped"):   # the trainer under both samplings
        t = r[sampling]
        assert t["ratio_plain"] > 0 and t["ratio_pad800"] > 0
        assert f"trainer ({sampling}" in p.stdout and "vs pad-to-800" in p.stdout
