"""The frontier report of a sweep (`e2wm.eval.frontier`): the lower envelope and the gap between two of them by
hand; synthetic eval folders for arms x 3 seeds x (lambda, step) where one arm lies a known gap below another at
matched forgetting (the verdict says so, with the constructed gap), identical-within-noise arms (no difference),
arms that never overlap; the plot's axes; the points table's n-weighted task NLL; one-line errors."""
import json
import math
import statistics

import pytest

from e2wm.errors import E2WMError
from e2wm.eval import frontier as fr

SEEDS = (1, 2, 3)
LAMS = (1.0, 100.0)
STEPS = (2, 4)


def _suite(n: int, nll: float, acc: float = 0.5) -> dict:
    return {"format": "mc", "n": n, "metric": "accuracy", "normalisation": "ln", "accuracy": acc,
            "answer_nll": {"mean": nll, "low": nll * 0.9, "high": nll * 1.1}}


def _results(out, name: str, nll: float, ppl: float, acc: float = 0.5) -> str:
    """OUT/eval/NAME/results.json: two heldout suites (n 10 and 30, answer NLL nll - 0.3 and nll + 0.1, so
    their n-weighted mean is nll), and a suite that is not held out (ignored: its NLL is huge)."""
    d = out / "eval" / name
    d.mkdir(parents=True)
    r = {"model": "m", "adapter": None, "suites": {
        "heldout_a": _suite(10, nll - 0.3, acc), "heldout_b": _suite(30, nll + 0.1, acc), "other": _suite(5, 50.0)},
         "perplexity": {"ppl": ppl, "nll": math.log(ppl), "tokens": 100, "documents": 3}}
    (d / "results.json").write_text(json.dumps(r))
    return f"eval/{name}"


def _curve(seed: int) -> list[tuple[float, float]]:
    """(general NLL, task NLL) of the (lambda, step) grid, each point forgetting more and learning more than the
    one before."""
    return [(2.0 + 0.1 * seed / 10 + 0.2 * (k // 2) + 0.05 * (k % 2), 1.6 - 0.2 * k + 0.01 * seed) for k in range(4)]


def _sweep(out, arms: dict, base=True) -> str:
    """runs.json and every point's results.json: arms maps name -> (seed -> (dx, dy)) shifts of `_curve`."""
    points = []
    if base:
        points.append({"run": "base", "arm": "base", "kind": None, "seed": None, "values": {}, "step": 0,
                       "final": False, "eval": _results(out, "base", 2.0, math.exp(1.9))})
    for arm, shift in arms.items():
        for seed in SEEDS:
            dx, dy = shift[seed]
            for k, (x, y) in enumerate(_curve(seed)):
                lam, step = LAMS[k // 2], STEPS[k % 2]
                run = f"{arm}.lam={lam:g}.s{seed}"
                final = step == STEPS[-1]
                name = run if final else f"{run}@step-{step}"
                points.append({"run": run, "arm": arm, "kind": "ewc_lora", "seed": seed,
                               "values": {"regularizer.lam": lam}, "step": step, "final": final,
                               "eval": _results(out, name, y + dy, math.exp(x + dx))})
    (out / "report").mkdir(parents=True, exist_ok=True)
    path = out / "report" / "runs.json"
    path.write_text(json.dumps({"sweep": {"seeds": list(SEEDS)}, "points": points}))
    return path


def test_the_envelope_of_four_points_by_hand():
    pts = [(2.0, 1.0), (1.0, 2.0), (3.0, 1.5), (4.0, 0.5)]   # (3, 1.5) is beaten by (2, 1)
    env = fr.envelope(pts)
    assert env == [(1.0, 2.0), (2.0, 1.0), (4.0, 0.5)]
    assert [fr.at(env, x) for x in (1.0, 1.99, 2.0, 3.5, 4.0, 9.0)] == [2.0, 2.0, 1.0, 1.0, 0.5, 0.5]


def test_the_gap_is_the_area_between_the_envelopes_over_the_overlap():
    a = [(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)]
    b = [(0.5, 4.0), (1.5, 2.5), (3.0, 0.0)]
    got = fr.mean_gap(a, b)   # b - a: 1 on [0.5, 1), 2 on [1, 1.5), 0.5 on [1.5, 2]
    assert (got["low"], got["high"]) == (0.5, 2.0)
    assert got["gap"] == pytest.approx((1 * 0.5 + 2 * 0.5 + 0.5 * 0.5) / 1.5)
    assert fr.mean_gap(a, [(5.0, 1.0), (6.0, 0.0)]) is None
    assert fr.mean_gap([(1.0, 2.0)], [(1.0, 2.5)]) == {"low": 1.0, "high": 1.0, "gap": 0.5}


def test_the_t_interval_matches_the_table_and_the_formula():
    m, lo, hi = fr.t_interval([0.2, 0.3, 0.25])
    half = 4.302653 * 0.05 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((0.25, 0.25 - half, 0.25 + half), abs=1e-6)
    assert fr.t_interval([0.3]) is None
    assert fr.t_quantile(2) == pytest.approx(fr.T975[1], abs=1e-6)


def test_an_arm_a_known_gap_below_learns_more(tmp_path):
    gaps = {1: 0.2, 2: 0.3, 3: 0.25}   # l2 lies these far above ewc_lora at the same forgetting, per seed
    runs = _sweep(tmp_path, {"l2": {s: (0.0, 0.0) for s in SEEDS}, "ewc_lora": {s: (0.0, -gaps[s]) for s in SEEDS},
                             "lora": {s: (0.5, 0.0) for s in SEEDS}})
    md = fr.frontier(tmp_path, runs)
    v = json.loads((tmp_path / "report" / "verdict.json").read_text())
    key = v["pairs"][0]
    assert key["key"] and (key["a"], key["b"]) == ("ewc_lora", "l2") and v["key"] == ["ewc_lora", "l2"]
    assert [s["gap"] for s in key["per_seed"]] == pytest.approx([gaps[s] for s in SEEDS])
    half = 4.302653 * statistics.stdev(gaps.values()) / math.sqrt(3)   # t(0.975, 2 df): 3 seeds are wide
    assert (key["mean"], key["low"], key["high"]) == pytest.approx((0.25, 0.25 - half, 0.25 + half))
    assert key["sentence"] == (f"ewc_lora learns more than l2 at matched forgetting (gap 0.2500 nats "
                               f"[{0.25 - half:.4f}, {0.25 + half:.4f}], 3 seeds)")
    assert key["overlap"] == pytest.approx([math.exp(2.01), math.exp(2.28)])
    assert len(v["pairs"]) == 3 and sum(p["key"] for p in v["pairs"]) == 1
    text = md.read_text()
    assert f"**Key comparison (ewc_lora vs l2):** {key['sentence']}." in text
    # the points table: the heldout suites' n-weighted NLL (not "other"'s 50), the base first
    base_row = next(line for line in text.splitlines() if line.startswith("| base |"))
    assert base_row.startswith(f"| base | - | - | 0 | 40 | 2.0000 | {math.exp(1.9):.3f} | 0.5000 |")
    assert "with 3 seeds, 2 df: t = 4.30" in text
    assert "| ewc_lora | 1 | regularizer.lam=100.0 | 4 (final) |" in text
    assert (tmp_path / "report" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_mirror_and_the_unresolved_verdicts(tmp_path):
    runs = _sweep(tmp_path, {"a": {s: (0.0, 0.0) for s in SEEDS}, "b": {s: (0.0, -0.2 - 0.01 * s) for s in SEEDS},
                             "c": {1: (0.0, 0.1), 2: (0.0, -0.08), 3: (0.0, 0.02)}})
    fr.frontier(tmp_path, runs)
    pairs = {(p["a"], p["b"]): p for p in json.loads((tmp_path / "report" / "verdict.json").read_text())["pairs"]}
    assert not any(p["key"] for p in pairs.values())   # no ewc_lora nor l2 here
    assert pairs["a", "b"]["sentence"].startswith("b learns more than a at matched forgetting (gap 0.2200 nats [")
    ac = pairs["a", "c"]
    assert ac["mean"] == pytest.approx(0.04 / 3) and ac["low"] < 0 < ac["high"]
    assert ac["sentence"].startswith("a vs c: no difference the interval can resolve (gap +0.0133 nats [")


def test_identical_arms_make_no_difference(tmp_path):
    runs = _sweep(tmp_path, {"ewc_lora": {s: (0.0, 0.0) for s in SEEDS}, "l2": {s: (0.0, 0.0) for s in SEEDS}})
    fr.frontier(tmp_path, runs)
    key = json.loads((tmp_path / "report" / "verdict.json").read_text())["pairs"][0]
    assert (key["mean"], key["low"], key["high"]) == (0.0, 0.0, 0.0)
    assert key["sentence"] == ("ewc_lora vs l2: no difference the interval can resolve (gap +0.0000 nats "
                               "[+0.0000, +0.0000], 3 seeds)")


def test_arms_that_never_overlap_are_not_compared(tmp_path):
    runs = _sweep(tmp_path, {"ewc_lora": {s: (0.0, 0.0) for s in SEEDS}, "l2": {s: (1.0, 0.0) for s in SEEDS}})
    md = fr.frontier(tmp_path, runs)
    key = json.loads((tmp_path / "report" / "verdict.json").read_text())["pairs"][0]
    assert key["overlap"] is None and key["mean"] is None and all(s["gap"] is None for s in key["per_seed"])
    assert "no overlap in forgetting in any seed" in key["sentence"]
    assert "| ewc_lora | l2 | 0 | none |" in md.read_text()


def test_the_plot_names_its_axes_and_draws_each_arm_and_the_base(tmp_path):
    runs = _sweep(tmp_path, {"ewc_lora": {s: (0.0, -0.2) for s in SEEDS}, "l2": {s: (0.0, 0.0) for s in SEEDS}})
    points, _, _ = fr.load(tmp_path, runs)
    fig = fr.figure(points, ["ewc_lora", "l2"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "held-out general text e^NLL (perplexity, log scale)"
    assert ax.get_xscale() == "log"   # the scale the verdict measures gaps on
    assert ax.get_ylabel() == "held-out task answer NLL (nats/token)"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["base model", "ewc_lora", "l2"]
    fronts = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert len(fronts) == 2 and len(fronts[0].get_xdata()) == 4   # the seed-means' front: all 4 configurations


def test_without_heldout_suites_it_falls_back_to_generation_suites(tmp_path):
    d = tmp_path / "eval" / "base"
    d.mkdir(parents=True)
    gen = {"format": "gen", "n": 4, "metric": "exact_match", "exact_match": 0.25, "answer_nll": {"mean": 1.5}}
    (d / "results.json").write_text(json.dumps({"suites": {"plan": gen, "qa": _suite(4, 9.0)},
                                                "perplexity": {"ppl": 10.0}}))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "runs.json").write_text(json.dumps({"points": [
        {"run": "base", "arm": "base", "seed": None, "values": {}, "step": 0, "eval": "eval/base"}]}))
    text = fr.frontier(tmp_path, tmp_path / "report" / "runs.json").read_text()
    assert "every generation suite (plan): this eval has no heldout_* suites" in text
    assert "| base | - | - | 0 | 4 | 1.5000 | 10.000 | 0.2500 |" in text and "Fewer than two arms" in text


@pytest.mark.parametrize("edit, message", [
    (lambda r, out: r["points"][1].update(seed="1"), "runs.json: points[1].seed: expected a run's seed (an int)"),
    (lambda r, out: r.update(points={}), "runs.json: points: expected a non-empty list"),
    (lambda r, out: (out / r["points"][2]["eval"] / "results.json").unlink(),
     "eval/ewc_lora.lam=1.s1/results.json: no such eval results file (runs.json points[2].eval"),
    (lambda r, out: _rewrite(out / r["points"][1]["eval"], lambda x: x["suites"]["heldout_b"].pop("answer_nll")),
     "results.json: suites.heldout_b.answer_nll.mean: missing"),
    (lambda r, out: _rewrite(out / r["points"][1]["eval"], lambda x: x.pop("perplexity")),
     "results.json: perplexity.ppl: missing"),
    (lambda r, out: _rewrite(out / r["points"][1]["eval"], lambda x: x["suites"]["heldout_a"].update(n=-1)),
     "results.json: suites.heldout_a.n: expected a count"),
])
def test_bad_input_is_one_line_naming_the_file_and_field(tmp_path, edit, message):
    runs = _sweep(tmp_path, {"ewc_lora": {s: (0.0, 0.0) for s in SEEDS}})
    r = json.loads(runs.read_text())
    edit(r, tmp_path)
    runs.write_text(json.dumps(r))
    with pytest.raises(E2WMError) as e:
        fr.frontier(tmp_path, runs)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "report" / "frontier.md").exists()


def _rewrite(folder, change):
    path = folder / "results.json"
    r = json.loads(path.read_text())
    change(r)
    path.write_text(json.dumps(r))


def test_a_point_carries_n_and_intervals_over_its_pooled_items(tmp_path):
    """A point's task NLL and metric get the bootstrap interval of every item of the heldout suites pooled (the
    n-weighted mean of suite means is their items' mean), its e^NLL the interval results.json holds."""
    from e2wm.eval.intervals import bootstrap
    g = [0.5 + 0.37 * ((7 * i) % 11) for i in range(40)]
    score = [float(i % 3 == 0) for i in range(40)]
    d = tmp_path / "eval" / "base"
    d.mkdir(parents=True)
    suites = {}
    for name, lo, hi in (("heldout_a", 0, 10), ("heldout_b", 10, 40)):
        suites[name] = {**_suite(hi - lo, statistics.mean(g[lo:hi]), statistics.mean(score[lo:hi])),
                        "per_item": {"answer_nll": g[lo:hi], "score": score[lo:hi]}}
    (d / "results.json").write_text(json.dumps({"suites": suites, "perplexity": {
        "ppl": 10.0, "interval": {"low": 9.0, "high": 11.5}}}))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "runs.json").write_text(json.dumps({"points": [
        {"run": "base", "arm": "base", "seed": None, "values": {}, "step": 0, "eval": "eval/base"}]}))
    text = fr.frontier(tmp_path, tmp_path / "report" / "runs.json").read_text()
    (ylo, yhi), (mlo, mhi) = bootstrap(g), bootstrap(score)
    row = next(line for line in text.splitlines() if line.startswith("| base |"))
    assert row == (f"| base | - | - | 0 | 40 | {statistics.mean(g):.4f} [{ylo:.4f}, {yhi:.4f}] | 10.000 [9.000, "
                   f"11.500] | {statistics.mean(score):.4f} [{mlo:.4f}, {mhi:.4f}] |")
    assert ylo < statistics.mean(g) < yhi and mlo < mhi
