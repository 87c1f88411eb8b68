"""`e2wm build-data` end to end on a small real collection."""
import json

import pytest

from episode_helpers import seal

from e2wm.cli import main
from e2wm.data.builder import build_data
from e2wm.data.config import DataConfig
from e2wm.data.eval_format import read_eval
from e2wm.data.leak import LeakGuard
from e2wm.data.suites import SUITES
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from e2wm.errors import E2WMError

@pytest.mark.slow
def test_builds_every_task_and_suite_with_no_overlap(episodes_dir, tmp_path):
    import datasets
    out = tmp_path / "data"
    s = build_data(episodes_dir, out, DataConfig(eval_fraction=0.25, unseen_fraction=0.2), log=lambda *a: None)
    assert {t for t, v in s["train"].items() if v["rows"]} == {
        plan_generation.TASK, activity_recognition.TASK, counting.TASK, object_path.TASK}
    built = [n for n, v in s["eval"].items() if v["rows"]]
    assert built == list(SUITES) + [f"heldout_{t}" for t in s["train"]]   # no suite is empty
    d = datasets.load_from_disk(str(out / "hf"))
    assert set(d) == {"train", *built}
    assert {r["task"] for r in d["train"]} == set(s["train"])
    weights = {r["task"]: r["weight"] for r in d["train"]}
    assert weights[activity_recognition.TASK] == 0.7 and weights[plan_generation.TASK] == 1.0
    for name in built:
        kind, rows = read_eval(out / "eval" / f"{name}.jsonl")
        assert kind == SUITES.get(name, "gen") and len(rows) == s["eval"][name]["rows"]
        assert "probe" not in rows[0]
    card = (out / "README.md").read_text()
    assert "plan_generation" in card and "count_qa" in card and "held-out" in card
    # the guard, rebuilt from the written training rows, finds no evaluation item in them
    train_rows = [json.loads(x) for f in (out / "train").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert all(set(r) == {"task", "input", "ref", "weight"} for r in train_rows)
    guard = LeakGuard([f"{r['input']} {r['ref']}" for r in train_rows])
    for name in ("count_qa", "obj_path", "obj_location"):
        for row in read_eval(out / "eval" / f"{name}.jsonl")[1]:
            probe = row["input"].split("\n\n")[-1] + " " + row.get("ref", row.get("answer", ""))
            assert guard.overlap(probe) < 0.5, (name, probe[:80])
    # no plan-generation item repeats a training (activity, plan) pair
    trained = {(r["input"].rsplit("Q: How to ", 1)[1].split("?")[0], r["ref"]) for r in train_rows
               if r["task"] == plan_generation.TASK}
    for name in ("plan_gen", "plan_gen_confusing"):
        for row in read_eval(out / "eval" / f"{name}.jsonl")[1]:
            assert (row["input"].rsplit("Q: How to ", 1)[1].split("?")[0], row["ref"]) not in trained
    assert s["coverage"]["trained"] >= 1 and s["plans"]["without_goal_object"] >= 0
    for name in ("act_recog", "act_infer", "housework_qa", "count_qa"):
        assert 0 <= s["eval"][name]["overlap_baseline"] <= 1 and s["eval"][name]["majority_baseline"] > 0


@pytest.mark.slow
def test_same_seed_same_files(episodes_dir, tmp_path):
    for k in (1, 2):
        build_data(episodes_dir, tmp_path / f"d{k}", DataConfig(seed=3), log=lambda *a: None)
    for sub in ("train", "eval"):
        for f in sorted((tmp_path / "d1" / sub).iterdir()):
            assert f.read_bytes() == (tmp_path / "d2" / sub / f.name).read_bytes(), f.name


def test_bad_inputs_name_what_and_where(episodes_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(E2WMError, match="already exists"):
        build_data(episodes_dir, tmp_path / "taken", DataConfig(), log=lambda *a: None)
    with pytest.raises(E2WMError, match="no manifest.json"):
        build_data(tmp_path / "taken", tmp_path / "o", DataConfig(), log=lambda *a: None)
    (episodes_dir / "shard-00001.jsonl").write_text('{"key": "x", "kind": "plan"\n')
    with pytest.raises(E2WMError, match=r"shard-00001.jsonl: not listed in .*manifest.json"):
        build_data(episodes_dir, tmp_path / "o", DataConfig(), log=lambda *a: None)
    seal(episodes_dir)
    with pytest.raises(E2WMError, match=r"shard-00001.jsonl:1: malformed JSON"):
        build_data(episodes_dir, tmp_path / "o", DataConfig(), log=lambda *a: None)
    assert not (tmp_path / "o").exists()
    with pytest.raises(E2WMError, match="threshold"):
        DataConfig(threshold=2)


def test_build_data_flags_and_set_override_the_preset(monkeypatch, capsys, tmp_path):
    class Built(Exception):
        pass

    def stop(episodes, out, cfg, **kw):
        raise Built(cfg)
    monkeypatch.setattr("e2wm.data.builder.build_data", stop)
    args = ["build-data", "--episodes", str(tmp_path), "--out", str(tmp_path / "d"), "--seed", "3",
            "--threshold", "0.4"]
    with pytest.raises(Built) as e:
        main([*args, "--set", "seed=4", "--set", "weights.counting=2"])
    cfg = e.value.args[0]
    assert (cfg.seed, cfg.threshold, cfg.eval_fraction) == (4, 0.4, 0.2)
    assert cfg.weights == {"plan_generation": 1.0, "activity_recognition": 0.7, "counting": 2.0,
                           "object_path": 1.0}
    assert main([*args, "--set", "weights.counting=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["e2wm: error: preset data.yaml + command line: weights.counting: expected a number, got 'x'"]


def test_guard_drops_a_planted_pair_repeat_and_repeated_queries():
    from e2wm.data.builder import _guard
    rows = [{"probe": "a", "query": "q1", "pair": ["make tea", "Walk to kettle."], "episode": "e1"},
            {"probe": "b", "query": "q2", "pair": ["make tea", "Walk to mug."], "episode": "e2"},
            {"probe": "c", "query": "q2", "pair": ["make tea", "Walk to cup."], "episode": "e3"},
            {"probe": "d", "query": "q4", "pair": ["make tea", "Walk to pot."], "episode": "t1"}]
    counts = _guard("plan_gen", rows, LeakGuard(["nothing in common here at all"]),
                    {("make tea", "Walk to kettle.")}, {"t1"})
    assert [r["episode"] for r in rows] == ["e2"]
    assert counts == {"pair": 1, "episode": 1, "ngram": 0, "repeat": 1}


def test_an_episode_that_disagrees_with_re_execution_fails_naming_it(episodes_dir, tmp_path):
    shard = episodes_dir / "shard-00000.jsonl"
    lines = shard.read_text().splitlines()
    k = next(i for i, x in enumerate(lines) if json.loads(x)["kind"] == "explore"
             and any(st["moves"] for st in json.loads(x)["steps"]))
    ep = json.loads(lines[k])
    step = next(st for st in ep["steps"] if st["moves"])
    step["moves"][0]["to"]["room"] = -7          # the record says it went somewhere it did not
    lines[k] = json.dumps(ep)
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(E2WMError, match=r"shard-00000.jsonl: altered since .*manifest.json listed it"):
        build_data(episodes_dir, tmp_path / "o", DataConfig(), log=lambda *a: None)
    seal(episodes_dir)   # the same change, made before sealing, is caught by re-execution
    with pytest.raises(E2WMError, match=rf"shard-00000.jsonl:{k + 1}: episode {ep['key']} .*re-execution"):
        build_data(episodes_dir, tmp_path / "o", DataConfig(), log=lambda *a: None)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_too_small_collection_fails_naming_the_suite(episodes_dir, tmp_path):
    with pytest.raises(E2WMError, match=r"too few evaluation items for suite\(s\) .*plan_gen"):
        build_data(episodes_dir, tmp_path / "o", DataConfig(min_suite_rows=10_000), log=lambda *a: None)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_card_reports_tokens_with_a_tokenizer(episodes_dir, tmp_path):
    from e2wm.train.model import byte_tokenizer
    byte_tokenizer().save_pretrained(tmp_path / "tok")
    out = tmp_path / "d"
    s = build_data(episodes_dir, out, DataConfig(), log=lambda *a: None, tokenizer=str(tmp_path / "tok"))
    rows = [json.loads(x) for x in (out / "train" / "counting.jsonl").read_text().splitlines()]
    longest = max(len(f"{r['input']} {r['ref']}".encode()) for r in rows)   # one token per byte
    assert s["train"]["counting"]["words"]["tokens"]["max"] == longest
    assert " tok)" in (out / "README.md").read_text()
    with pytest.raises(E2WMError, match="--tokenizer"):
        build_data(episodes_dir, tmp_path / "e", DataConfig(), log=lambda *a: None,
                   tokenizer=str(tmp_path / "missing"))
