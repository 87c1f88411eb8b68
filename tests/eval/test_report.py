"""`e2wm report`: runs side by side, E2WM's average relative improvement, PNG charts."""
import json

import pytest

from e2wm.cli import main
from e2wm.eval.report import relative_improvement


def _run(d, acc, rouge_l, ppl=None):
    d.mkdir()
    r = {"model": "m", "adapter": None, "suites": {
        "count_qa": {"format": "mc", "n": 4, "metric": "accuracy", "normalisation": "ln", "accuracy": acc},
        "plan_gen": {"format": "gen", "n": 4, "metric": "rouge", "rougeL": rouge_l}}}
    if ppl:
        r["perplexity"] = {"ppl": ppl}
    (d / "results.json").write_text(json.dumps(r))
    return r


def test_relative_improvement_is_the_mean_of_per_suite_gains(tmp_path):
    base, run = _run(tmp_path / "a", 0.5, 0.2), _run(tmp_path / "b", 0.75, 0.1)
    assert relative_improvement(base, run) == pytest.approx((0.5 - 0.5) / 2)   # +50% and -50%


def test_report_writes_the_table_and_charts(tmp_path, capsys):
    _run(tmp_path / "base", 0.5, 0.2, ppl=12.5)
    _run(tmp_path / "ewc_lora", 0.75, 0.3, ppl=13.0)
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "ewc_lora"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| suite | metric | base | ewc_lora |" in md
    assert "| count_qa | accuracy (ln) | 0.5000 | 0.7500 |" in md
    assert md.index("| plan_gen |") < md.index("| perplexity (lower is better) | e^NLL | 12.500 | 13.000 |")
    assert "ewc_lora +50.00%" in md                      # (+50% on count_qa, +50% on plan_gen) / 2
    for png in ("mc.png", "gen.png"):
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert "no such eval run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_never_imports_collect_or_ray():
    import subprocess
    import sys
    code = ("import sys, e2wm.eval.harness, e2wm.eval.report; "
            "print([m for m in sys.modules if m.startswith('e2wm.collect') or m == 'ray'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
