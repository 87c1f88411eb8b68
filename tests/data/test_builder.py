"""`e2wm build-data` end to end on a small real collection."""
import json

import pytest

from e2wm.cli import main
from e2wm.data.builder import build_data
from e2wm.data.config import DataConfig
from e2wm.data.eval_format import read_eval
from e2wm.data.leak import LeakGuard
from e2wm.data.suites import SUITES
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from e2wm.errors import E2WMError

def test_builds_every_task_and_suite_with_no_overlap(episodes_dir, tmp_path):
    import datasets
    out = tmp_path / "data"
    s = build_data(episodes_dir, out, DataConfig(eval_fraction=0.25, unseen_fraction=0.2), log=lambda *a: None)
    assert {t for t, v in s["train"].items() if v["rows"]} == {
        plan_generation.TASK, activity_recognition.TASK, counting.TASK, object_path.TASK}
    built = [n for n, v in s["eval"].items() if v["rows"]]
    assert len(built) >= 8
    d = datasets.load_from_disk(str(out / "hf"))
    assert set(d) == {"train", *built}
    assert {r["task"] for r in d["train"]} == set(s["train"])
    weights = {r["task"]: r["weight"] for r in d["train"]}
    assert weights[activity_recognition.TASK] == 0.7 and weights[plan_generation.TASK] == 1.0
    for name in built:
        kind, rows = read_eval(out / "eval" / f"{name}.jsonl")
        assert kind == SUITES[name] and len(rows) == s["eval"][name]["rows"]
        assert "probe" not in rows[0]
    card = (out / "README.md").read_text()
    assert "plan_generation" in card and "count_qa" in card and "held-out" in card
    # the guard, rebuilt from the written training rows, finds no evaluation item in them
    train_texts = [json.loads(x)["input"] + json.loads(x)["ref"] for f in (out / "train").glob("*.jsonl")
                   for x in f.read_text().splitlines()]
    guard = LeakGuard(train_texts)
    for name in built:
        for row in read_eval(out / "eval" / f"{name}.jsonl")[1]:
            probe = row["input"].split("\n\n")[-1] + " " + row.get("ref", row.get("answer", ""))
            assert guard.overlap(probe) < 0.5, (name, probe[:80])


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
    with pytest.raises(E2WMError, match="no shard"):
        build_data(tmp_path / "taken", tmp_path / "o", DataConfig(), log=lambda *a: None)
    (episodes_dir / "shard-00001.jsonl").write_text('{"key": "x", "kind": "plan"\n')
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
