"""`e2wm bench eval` runs both contenders on the same items and they agree (speed is not asserted)."""
import json

import pytest

from e2wm.cli import main


@pytest.mark.slow
def test_bench_eval_prints_a_ratio_and_equal_scores(capsys):
    assert main(["bench", "eval", "--items", "2", "--words", "20"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["bench"] == "eval" and r["ratio"] > 0 and r["items"] == 2
    assert r["max_abs_score_diff"] <= 1e-4
