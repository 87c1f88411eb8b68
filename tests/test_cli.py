"""The `e2wm` command: real entry points, small sizes."""
import json
import re
import subprocess
import sys

import pytest

from e2wm.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "e2wm.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_world_demo_runs_an_episode(capsys):
    assert main(["world", "demo", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if re.match(r"\s+\d+\. \[", line)]
    assert len(steps) >= 8
    assert sum(line.rstrip().endswith(" ok") for line in steps) >= 6
    assert "FAILED" in out          # the scripted Grab from a closed container must fail


@pytest.mark.parametrize("args, names", [
    (["bench", "world", "--scene", "no/such/scene.json"], "no/such/scene.json"),
    (["world", "demo", "--seed", "-4"], "seed"),
    (["plan", "--activity", "wach tv"], "watch tv"),
    (["plan", "--scene", "procedural:0", "--activity", "watch tv", "--simulations", "0"], "simulations"),
    (["plan", "--scene", "procedural:0"], "activity"),
    (["explore", "--agents", "0"], "agents"),
    (["collect", "--config", "no/such/job.yaml"], "no/such/job.yaml"),
])
def test_user_errors_print_one_line_and_exit_2(args, names, tmp_path):
    r = _run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("e2wm") and ": error: " in lines[0] and names in lines[0]


def test_malformed_scene_json_names_file_and_position(tmp_path):
    bad = tmp_path / "scene.json"
    bad.write_text('{"nodes": [}')
    r = _run("bench", "world", "--scene", str(bad))
    assert r.returncode == 2 and f"{bad}:1:" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_bench_world_reports_ratios():
    pytest.importorskip("virtualhome_eval")
    r = _run("bench", "world", "--steps", "300")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["bench"] == "world" and row["steps"] == 300
    for key in ("ratio_step", "ratio_clone_step", "clone_us_median"):
        assert row[key] > 0


def test_world_conformance_json_line():
    pytest.importorskip("virtualhome_eval")
    r = _run("world", "conformance", "--programs", "6", "--random-steps", "150", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["programs_total"] == 6 and row["random_steps"] == 150
    assert row["programs_executed"] >= 5 and row["unexplained"] == 0
    assert row["final_match"] >= row["oracle_final_match"]


@pytest.mark.slow
def test_plan_prints_a_readable_episode_and_json(capsys):
    assert main(["plan", "--activity", "watch tv", "--seed", "0", "--simulations", "800"]) == 0
    out = capsys.readouterr().out
    assert "Activity: watch tv" in out and "procedural:" in out
    assert re.search(r"^\s+1\. \[Walk\] <\w+> \(\d+\)", out, re.M)
    assert "SUCCESS" in out
    assert main(["plan", "--activity", "watch tv", "--seed", "0", "--simulations", "800", "--json"]) == 0
    ep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ep["kind"] == "plan" and ep["success"] is True and ep["activity"] == "watch tv"


def test_plan_list_names_the_library(capsys):
    assert main(["plan", "--list"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) >= 60 and "watch tv" in out


def test_explore_prints_every_step(capsys):
    assert main(["explore", "--agents", "3", "--steps", "40", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^\s+\d+\. agent [012] ", out, re.M)) == 40


@pytest.mark.slow
def test_bench_mcts_json_line():
    pytest.importorskip("virtualhome_eval")
    r = _run("bench", "mcts", "--simulations", "400", "--official-simulations", "20")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["bench"] == "mcts" and d["ratio"] > 0
    assert {"sims_per_s", "seconds_20k", "ratio"} <= d.keys()


@pytest.mark.slow
def test_collect_writes_shards_and_resumes(tmp_path):
    args = ["collect", "--out", str(tmp_path), "--plans", "3", "--explorations", "3", "--stories", "0",
            "--simulations", "100", "--workers", "1", "--shard-size", "4"]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["units"] == 6 and manifest["episodes"] + manifest["failures"] == 6
    assert sorted(manifest["shards"]) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    again = _run(*args)
    assert again.returncode == 0 and manifest["content_hash"] in again.stdout
    assert json.loads((tmp_path / "stats.json").read_text())["units_this_run"] == 0


@pytest.mark.slow
def test_build_data_from_a_collection(tmp_path):
    r = _run("collect", "--out", str(tmp_path / "c"), "--plans", "30", "--explorations", "30", "--scenes", "8",
             "--simulations", "300", "--workers", "2")
    assert r.returncode == 0, r.stderr
    r = _run("build-data", "--episodes", str(tmp_path / "c"), "--out", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert "train/eval overlaps: 0" in r.stdout
    assert (tmp_path / "d" / "hf" / "dataset_dict.json").exists()
    again = _run("build-data", "--episodes", str(tmp_path / "c"), "--out", str(tmp_path / "d"))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_fisher_command_writes_safetensors(tmp_path):
    r = _run("fisher", "--model", "tiny", "--corpus", "builtin:pydoc", "--out", str(tmp_path),
             "--max-samples", "4", "--max-length", "32")
    assert r.returncode == 0, r.stderr
    from e2wm.train.fisher_io import load_fisher
    tensors, meta = load_fisher(tmp_path)
    assert tensors and meta["samples"] == "4" and meta["modules"] == "lora-targets"


def test_train_passes_its_flags_to_the_recipe(capsys):
    assert main(["train", "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lrr" in err[0]
