"""`e2wm report`: runs side by side, E2WM's average relative improvement, PNG charts; with results.json that
carry per-item values: intervals in the cells, paired differences against the base run, answer NLL, and
all-zero suites flagged and left out of the charts."""
import json
import statistics

import pytest

from e2wm.cli import main
from e2wm.eval.intervals import bootstrap, paired, relative_gain, settings
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
    assert "Items scored per suite (n): " in md and "count_qa " in md.split("Items scored per suite (n): ")[1]
    assert md.index("| plan_gen |") < md.index("| perplexity (lower is better) | e^NLL | 12.500 | 13.000 |")
    assert "ewc_lora +50.00% (2 suites; no interval: " in md   # (+50% on count_qa, +50% on plan_gen) / 2
    for png in ("mc.png", "gen.png"):
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert "no such eval run directory" in capsys.readouterr().err


def _suite(fmt: str, metric: str, scores: list[float], nll: list[float], sha: str = "a" * 64, **kw) -> dict:
    """A suite entry as `e2wm eval` writes it, from its per-item values."""
    key = {"accuracy": "accuracy", "rouge": "rougeL"}.get(metric, metric)
    low, high = bootstrap(scores)
    nll_low, nll_high = bootstrap(nll)
    return {"format": fmt, "n": len(scores), "sha256": sha, "metric": metric, key: statistics.mean(scores),
            **({"normalisation": "ln"} if fmt == "mc" else {"empty_predictions": 0}),
            "interval": {"low": low, "high": high, **settings()},
            "answer_nll": {"mean": statistics.mean(nll), "low": nll_low, "high": nll_high},
            "per_item": {"score": list(scores), "answer_nll": list(nll)}, **kw}


def _write(d, suites: dict) -> dict:
    d.mkdir()
    r = {"model": "m", "adapter": None, "suites": suites}
    (d / "results.json").write_text(json.dumps(r))
    return r


BASE_QA = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
RUN_QA = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
NLL = [2.5, 3.0, 1.25, 4.0, 2.0, 2.75, 3.5, 1.5, 2.25, 3.25]
PLAN = [0.5, 0.25, 0.75, 0.0]


def test_report_shows_intervals_paired_differences_and_flags_a_suite_of_zeros(tmp_path):
    zeros = [0.0] * 4
    base = _write(tmp_path / "base", {
        "count_qa": _suite("mc", "accuracy", BASE_QA, NLL),
        "plan_gen": _suite("gen", "rouge", PLAN, [1.0, 2.0, 3.0, 4.0]),
        "obj_path": _suite("gen", "lcs", zeros, [1.0] * 4, empty_predictions=4)})
    run_nll = [x - 0.5 for x in NLL]
    run = _write(tmp_path / "lora", {
        "count_qa": _suite("mc", "accuracy", RUN_QA, run_nll),
        "plan_gen": _suite("gen", "rouge", PLAN, [1.0, 2.0, 3.0, 4.0], sha="b" * 64),   # another suite file
        "obj_path": _suite("gen", "lcs", zeros, [1.0] * 4, empty_predictions=4)})
    _write(tmp_path / "short", {"count_qa": _suite("mc", "accuracy", RUN_QA[:5], NLL[:5])})   # --limit 5
    assert main(["report", *(str(tmp_path / x) for x in ("base", "lora", "short")), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    qa = [r["suites"]["count_qa"] for r in (base, run)]
    cells = [f"{s['accuracy']:.4f} [{s['interval']['low']:.4f}, {s['interval']['high']:.4f}]" for s in qa]
    assert f"| count_qa | accuracy (ln) | {cells[0]} | {cells[1]} | " in md
    nll_cells = [f"{s['answer_nll']['mean']:.4f} [{s['answer_nll']['low']:.4f}, {s['answer_nll']['high']:.4f}]"
                 for s in qa]
    assert f"| count_qa | {nll_cells[0]} | {nll_cells[1]} | " in md
    low, high = paired(BASE_QA, RUN_QA)
    diff = statistics.mean(RUN_QA) - statistics.mean(BASE_QA)
    assert f"| count_qa | accuracy (ln) | {diff:+.4f} [{low:+.4f}, {high:+.4f}] | n/a |" in md
    low, high = paired(NLL, run_nll)
    assert f"| count_qa | answer NLL | {-0.5:+.4f} [{low:+.4f}, {high:+.4f}] | n/a |" in md
    assert low == pytest.approx(-0.5)
    assert "| plan_gen | rougeL | n/a | n/a |" in md
    assert "- plan_gen, lora: the runs scored different suite files (sha256)\n" in md
    assert "- count_qa, short: the runs scored different numbers of items (n 10 and 5)\n" in md
    # E2WM's summary figure with its interval: count_qa and plan_gen pair with the base only where the files match
    assert "lora +" in md and "(2 suites; no interval: the runs scored different suite files (sha256))" in md
    assert "- plan_gen, short: not in this run\n" in md
    assert "- obj_path: all scores 0: nothing to draw (every prediction empty in base, lora)" in md
    assert "- count_qa:" not in md.split("## Flagged suites")[1] and "- plan_gen:" not in md.split("## Flagged")[1]
    for png in ("mc.png", "gen.png", "answer_nll.png"):   # gen: plan_gen alone (obj_path flagged)
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_group_with_nothing_to_draw_makes_no_chart(tmp_path, monkeypatch):
    from e2wm.eval import report
    drawn = []
    real = report._chart
    monkeypatch.setattr(report, "_chart", lambda path, title, suites, *a, **k: drawn.append(
        (path.name, suites, a[-1] if len(a) > 3 else k)) or real(path, title, suites, *a, **k))
    _write(tmp_path / "base", {"count_qa": _suite("mc", "accuracy", BASE_QA, NLL),
                               "obj_path": _suite("gen", "lcs", [0.0] * 4, [1.0] * 4),
                               "plan_gen": _suite("gen", "exact_match", [0.0] * 4, [2.0] * 4)})
    assert main(["report", str(tmp_path / "base"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert not (tmp_path / "r" / "gen.png").exists() and "gen.png" not in md
    assert [(name, suites) for name, suites, _ in drawn] == [("mc.png", ["count_qa"]),
                                                             ("answer_nll.png", ["count_qa", "obj_path", "plan_gen"])]
    assert "- obj_path: all scores 0: nothing to draw; left out" in md and "- plan_gen: all scores 0" in md
    assert "## Paired differences" not in md   # one run: nothing to pair


def test_the_chart_axes_name_the_metric_and_draw_the_intervals(tmp_path, monkeypatch):
    import matplotlib.axes
    seen = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel", lambda self, label, *a, **k: seen.append(("y", label)))
    real_bar = matplotlib.axes.Axes.bar
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", lambda self, x, h, *a, yerr=None, **k: seen.append(
        ("bar", list(h), [list(e) for e in yerr])) or real_bar(self, x, h, *a, yerr=yerr, **k))
    s = _suite("mc", "accuracy", BASE_QA, NLL)
    _write(tmp_path / "base", {"count_qa": s, "plan_gen": _suite("gen", "rouge", PLAN, [1.0] * 4)})
    assert main(["report", str(tmp_path / "base"), "--out", str(tmp_path / "r")]) == 0
    labels = [x[1] for x in seen if x[0] == "y"]
    assert labels == ["accuracy (ln)", "ROUGE-L F", "answer NLL (nats per token)"]
    v, iv = s["accuracy"], s["interval"]
    assert ("bar", [v], [[v - iv["low"]], [iv["high"] - v]]) in seen


def test_older_results_without_per_item_values_are_reported_without_intervals(tmp_path):
    _run(tmp_path / "old", 0.5, 0.2)
    _write(tmp_path / "new", {"count_qa": _suite("mc", "accuracy", BASE_QA, NLL, sha="c" * 64)})
    assert main(["report", str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| count_qa | accuracy (ln) | 0.5000 | 0.4000 [" in md
    assert "- count_qa, new: the runs scored different suite files (sha256)" in md


@pytest.mark.parametrize("change, names", [
    (lambda s: s["per_item"].update(score=s["per_item"]["score"][:-1]), ["per_item.score", "list of the suite's 10"]),
    (lambda s: s["per_item"]["score"].__setitem__(2, 1.5), ["per_item.score[2]", "[0, 1]"]),
    (lambda s: s["per_item"]["score"].__setitem__(2, 1.0), ["per_item.score", "not the headline"]),
    (lambda s: s["per_item"]["answer_nll"].__setitem__(0, -1.0), ["per_item.answer_nll[0]", ">= 0"]),
    (lambda s: s["per_item"]["answer_nll"].__setitem__(0, None), ["per_item.answer_nll[0]", "None"]),
    (lambda s: s["per_item"].update(answer_nll="many"), ["per_item.answer_nll", "'many'"]),
    (lambda s: s.update(per_item=[1.0]), ["per_item", "mapping"]),
    (lambda s: s["interval"].update(low=0.9, high=0.1), ["interval.high", "[0.9, 1]"]),
    (lambda s: s["interval"].update(low=None), ["interval.low"]),
    (lambda s: s["interval"].update(resamples=2.5), ["interval.resamples", "count"]),
    (lambda s: s.update(interval=[0.1, 0.9]), ["interval", "mapping"]),
    (lambda s: s["answer_nll"].update(mean=None), ["answer_nll.mean", "None"]),
    (lambda s: s["answer_nll"].update(mean=s["answer_nll"]["mean"] + 1), ["per_item.answer_nll", "answer_nll.mean"]),
    (lambda s: s.update(empty_predictions=11), ["empty_predictions", "11 of only 10"]),
])
def test_bad_interval_fields_are_refused_in_one_line(tmp_path, cli_error, change, names):
    s = _suite("mc", "accuracy", BASE_QA, NLL)
    change(s)
    _write(tmp_path / "base", {"count_qa": s})
    cli_error(["report", tmp_path / "base", "--out", tmp_path / "r"], ["results.json", "suites.count_qa", *names])
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_eval_never_imports_collect_or_ray():
    import subprocess
    import sys
    code = ("import sys, e2wm.eval.harness, e2wm.eval.report; "
            "print([m for m in sys.modules if m.startswith('e2wm.collect') or m == 'ray'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_average_relative_improvement_carries_its_interval_and_n(tmp_path):
    """Both suites pair with the base: E2WM's figure, [the paired bootstrap over each suite's items], 2 suites.
    A base of 10 items with 6 zeros resamples to a mean of 0 now and then: the gain is then unbounded, said."""
    base_qa, run_qa, plan, run_plan = BASE_QA * 4, RUN_QA * 4, [0.5, 0.25, 0.75, 0.4], [0.75, 0.25, 0.75, 0.25]
    _write(tmp_path / "base", {"count_qa": _suite("mc", "accuracy", base_qa, NLL * 4),
                               "plan_gen": _suite("gen", "rouge", plan, [1.0] * 4)})
    _write(tmp_path / "lora", {"count_qa": _suite("mc", "accuracy", run_qa, NLL * 4),
                               "plan_gen": _suite("gen", "rouge", run_plan, [1.0] * 4)})
    assert main(["report", *(str(tmp_path / x) for x in ("base", "lora")), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    m = statistics.mean
    gain = ((m(run_qa) / m(base_qa) - 1) + (m(run_plan) / m(plan) - 1)) / 2
    low, high = relative_gain([(base_qa, run_qa), (plan, run_plan)])
    assert low < gain < high
    assert f"lora {gain:+.2%} [{low:+.2%}, {high:+.2%}] (2 suites)." in md
    _write(tmp_path / "base10", {"count_qa": _suite("mc", "accuracy", BASE_QA, NLL)})
    _write(tmp_path / "run10", {"count_qa": _suite("mc", "accuracy", RUN_QA, NLL)})
    assert main(["report", *(str(tmp_path / x) for x in ("base10", "run10")), "--out", str(tmp_path / "r2")]) == 0
    assert "(1 suite; no interval: a resampled base mean reaches 0, so the gain is unbounded)" in \
        (tmp_path / "r2" / "report.md").read_text()
