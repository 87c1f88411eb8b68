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
])
def test_user_errors_print_one_line_and_exit_2(args, names, tmp_path):
    r = _run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("e2wm: error:") and names in lines[0]


def test_malformed_scene_json_names_file_and_position(tmp_path):
    bad = tmp_path / "scene.json"
    bad.write_text('{"nodes": [}')
    r = _run("bench", "world", "--scene", str(bad))
    assert r.returncode == 2 and f"{bad}:1:" in r.stderr and "Traceback" not in r.stderr


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
