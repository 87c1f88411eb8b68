"""Held-out slices of the training tasks (`e2wm.data.heldout`): never trained on, scored as declared,
chosen from the seed; and the data card's coverage on a collection of a subset of the library."""
import json
import random

import pytest

from episode_helpers import ACTS

from e2wm.data import heldout
from e2wm.data.builder import TASKS, build_data, training_rows
from e2wm.data.config import DataConfig
from e2wm.data.eval_format import read_eval, read_spec
from e2wm.data.leak import LeakGuard
from e2wm.data.prompts import Templates
from e2wm.data.split import collection_activities, load_episodes, split
from e2wm.data.views import plan_of, plan_parts, plans
from e2wm.eval.executability import execute
from e2wm.world.activities import UNSEEN_NAMES

CFG = dict(eval_fraction=0.25, unseen_fraction=0.2)
METRICS = {"plan_generation": "rouge", "activity_recognition": "exact_match", "counting": "exact_match",
           "object_path": "lcs"}


def _quiet(*a):
    pass


def _train_split(episodes_dir, **kw):
    cfg = DataConfig(**CFG, **kw)
    return split(load_episodes(episodes_dir), cfg.eval_fraction, cfg.unseen_fraction, cfg.seed).train, cfg


@pytest.fixture
def built(episodes_dir, tmp_path):
    out = tmp_path / "data"
    return out, build_data(episodes_dir, out, DataConfig(**CFG), log=_quiet)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_held_out_episodes_give_no_training_row_nor_exemplar(episodes_dir):
    episodes, cfg = _train_split(episodes_dir)
    training, held, train, held_rows = training_rows(episodes, cfg, Templates(cfg.template))
    out = set().union(*held.values())
    assert out and set(held_rows) == {m.TASK for m in TASKS}
    assert not out & {e.key for e in training}
    assert {e.key for e in training} | out == {e.key for e in episodes}
    trained = {r["episode"] for rows in train.values() for r in rows}
    text = "\n".join(f"{r['input']} {r['ref']}" for rows in train.values() for r in rows)
    for task, rows in held_rows.items():
        assert rows and {r["episode"] for r in rows} == held[task] and not held[task] & trained
        for r in rows:
            assert r["query"] not in text, (task, r["query"][:80])
    # plans go out of both plan tasks at once: a held-out plan is neither answered nor asked in training
    assert held["plan_generation"] == held["activity_recognition"]
    # (as a whole line: a plan's text may be the tail of a longer training plan, which walks to the room first)
    by_key = {e.key: e for e in episodes}
    lines = {ln.removeprefix("A: ") for ln in text.splitlines()}
    for k in held["plan_generation"]:
        assert plan_of(by_key[k]) not in lines
    # no training plan shares a held-out plan's text or question, and every activity still trains
    def ask(e):
        return (e.activity, *map(tuple, plan_parts(e)))
    kept, gone = plans(training), [by_key[k] for k in held["plan_generation"]]
    assert not {plan_of(e) for e in gone} & {plan_of(e) for e in kept}
    assert not {ask(e) for e in gone} & {ask(e) for e in kept}
    assert {e.activity for e in kept} == {e.activity for e in plans(episodes)}


def test_the_selection_follows_the_seed_the_cap_and_zero_disables(episodes_dir):
    episodes, cfg = _train_split(episodes_dir)
    t = Templates(cfg.template)
    eligible = {m.TASK: {r["episode"] for r in m.build(episodes, random.Random(0), t)} for m in TASKS}
    a, b = (heldout.choose(episodes, eligible, 64, 0) for _ in range(2))
    assert a == b and all(a.values())
    assert any(heldout.choose(episodes, eligible, 64, s) != a for s in (1, 2, 3))
    for task, keys in a.items():   # at most a quarter of the task's episodes, and at most n
        assert len(keys) <= len(eligible[task]) // heldout.CAP
    assert all(len(k) <= 2 for k in heldout.choose(episodes, eligible, 2, 0).values())
    assert heldout.choose(episodes, eligible, 0, 0) == {task: set() for task in eligible}
    training, held, train, held_rows = training_rows(episodes, DataConfig(**CFG, heldout_rows=0), t)
    assert training == episodes and held_rows == {} and not any(held.values())


def test_held_out_suites_are_written_scored_as_declared_and_kept_from_training(built):
    out, s = built
    train = [r for f in sorted((out / "train").glob("*.jsonl")) for r in _lines(f)]
    inputs = {r["input"] for r in train}
    text = "\n".join(f"{r['input']} {r['ref']}" for r in train)
    lines = {ln.removeprefix("A: ") for ln in text.splitlines()}   # whole plans, as above
    guard = LeakGuard([f"{r['input']} {r['ref']}" for r in train])
    for task, metric in METRICS.items():
        name = heldout.suite_name(task)
        v = s["heldout"][task]
        assert v["suite"] == name and 0 < v["rows"] <= 64 and v["disjoint_from_training"] == "checked"
        path = out / "eval" / f"{name}.jsonl"
        kind, rows = read_eval(path)
        spec, where = read_spec(path, kind, rows)
        assert (kind, spec.metric, where) == ("gen", metric, f"sidecar {name}.suite.yaml")
        assert len(rows) == v["rows"] == s["eval"][name]["rows"]
        for r in rows:
            query = "Q: " + r["input"].split("\nQ: ")[-1] if task == "plan_generation" else r["input"].split("\n\n")[-1]
            assert r["input"] not in inputs and query not in text, (task, query[:80])
            if task in ("counting", "object_path"):    # stories: the guard's n-gram rule too
                assert guard.overlap(f"{query} {r['ref']}") < 0.5, (task, query[:80])
            if task == "plan_generation":   # the plan is no training row's answer or question
                assert r["ref"] not in lines
                e = execute(r["ref"], r["world"])
                assert e.executable and e.success
    import datasets
    assert {heldout.suite_name(t) for t in METRICS} <= set(datasets.load_from_disk(str(out / "hf")))


def test_the_card_says_held_out_rows_are_disjoint_and_counts_them(episodes_dir, tmp_path):
    # a seed that holds out two plans of one text or one question, so a plan task keeps one row of the two
    # (the first such seed; which one depends on the collection)
    for seed in range(8):
        out = tmp_path / f"d{seed}"
        s = build_data(episodes_dir, out, DataConfig(**CFG, seed=seed), log=_quiet)
        if any(v["rows"] != v["episodes"] for v in s["heldout"].values()):
            break
    assert any(v["rows"] != v["episodes"] for v in s["heldout"].values())
    card = (out / "README.md").read_text()
    assert "## Held-out training slices" in card and "| disjoint from training |" in card
    assert "Disjoint from training, checked:" in card
    for task, v in s["heldout"].items():
        rows = len(read_eval(out / "eval" / f"{heldout.suite_name(task)}.jsonl")[1])
        assert (f"| {task} | {heldout.suite_name(task)} | {METRICS[task]} | {v['episodes']} | {rows} | "
                f"{v['episodes'] - rows} | checked |") in card
    assert f"held out of training (the heldout_* suites): {s['split']['heldout_episodes']}" in card
    # plans leave both plan tasks together; stories and explorations are episodes of their own
    assert s["split"]["heldout_episodes"] == sum(s["heldout"][t]["episodes"]
                                                 for t in ("plan_generation", "counting", "object_path")) > 0


def test_zero_held_out_rows_writes_no_held_out_suite(episodes_dir, tmp_path):
    out = tmp_path / "d"
    s = build_data(episodes_dir, out, DataConfig(**CFG, heldout_rows=0), log=_quiet)
    assert not list((out / "eval").glob("heldout_*")) and s["split"]["heldout_episodes"] == 0
    assert all(v["suite"] is None and v["rows"] == 0 for v in s["heldout"].values())
    assert "| counting | none | exact_match | 0 | 0 | 0 | checked |" in (out / "README.md").read_text()


def _with_job(episodes_dir, job):
    m = json.loads((episodes_dir / "manifest.json").read_text())
    m["job"] = job
    (episodes_dir / "manifest.json").write_text(json.dumps(m))


def test_a_collection_of_a_subset_is_reported_as_one_by_design(episodes_dir, tmp_path):
    assert collection_activities(episodes_dir) is None       # a hand-made manifest: the whole library
    _with_job(episodes_dir, {"scene_source": "robothow", "activities": ["watch tv"]})
    assert collection_activities(episodes_dir) is None
    chosen = [*ACTS, "Watch  TV"]
    _with_job(episodes_dir, {"scene_source": "procedural", "activities": chosen})
    assert collection_activities(episodes_dir) == (*ACTS, "watch tv")
    out = tmp_path / "d"
    s = build_data(episodes_dir, out, DataConfig(**CFG), log=_quiet)
    cov = s["coverage"]
    library = [a for a in (*ACTS, "watch tv") if a not in UNSEEN_NAMES]
    assert cov["subset"] == {"activities": len(chosen), "library": len(library),
                             "held_out_set": len(ACTS) + 1 - len(library)}
    assert len(library) == cov["trained"] + cov["unseen"] + len(cov["missing"])
    assert set(cov["missing"]) <= set(library) and "watch tv" in cov["missing"]
    assert "make coffee" not in cov["missing"]
    assert set(cov["missing"]).isdisjoint(s["split"]["unseen_activities"])
    card = (out / "README.md").read_text()
    line = next(x for x in card.splitlines() if "subset of the activity library by design" in x)
    assert f"{cov['subset']['library']} of its {cov['library']} activities" in line
    line = next(x for x in card.splitlines() if x.startswith("- activities of that subset trained on:"))
    assert f"{cov['trained']} / {cov['subset']['library']}" in line and "make coffee" not in line
    assert "watch tv" in line


def test_a_whole_library_collection_keeps_the_library_line(built):
    out, s = built
    assert s["coverage"]["subset"] is None
    card = (out / "README.md").read_text()
    assert f"- library activities trained on: {s['coverage']['trained']} / {s['coverage']['library']}" in card
    assert "by design" not in card
