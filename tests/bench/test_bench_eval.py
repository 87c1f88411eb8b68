"""`e2wm bench eval` runs both contenders on the same items and they agree (speed is not asserted): multiple
choice, and greedy generation's first lines."""
import json

import pytest

from e2wm.cli import main


@pytest.mark.slow
def test_bench_eval_prints_a_ratio_and_equal_scores(capsys):
    assert main(["bench", "eval", "--items", "2", "--words", "20", "--gen-items", "3", "--new-tokens", "8"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["bench"] == "eval" and r["ratio"] > 0 and r["items"] == 2
    assert r["max_abs_score_diff"] <= 1e-4
    g = r["generation"]
    assert g["items"] == 3 and g["new_tokens"] == 8 and g["greedy"]["first_lines_equal"] == 3
    assert g["greedy"]["ratio"] > 0 and 0 <= g["beams4"]["first_lines_equal"] <= 3
    assert g["beams4"]["same_as_generate"] == g["greedy"]["same_as_generate"] == "3/3"


@pytest.mark.slow
def test_bench_eval_loads_a_named_model_in_bf16(capsys):
    assert main(["bench", "eval", "--items", "2", "--words", "20", "--gen-items", "2", "--new-tokens", "4",
                 "--model", "tiny", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    r = json.loads(out[-1])
    assert out[0] == "tiny (bf16) on cpu" and r["model"] == "tiny (bf16)"
    assert r["generation"]["greedy"]["same_as_generate"] == "2/2"
