"""The collection driver on a private local Ray instance: determinism, fault tolerance, resume."""
import json
import os
import signal
import subprocess
import sys

import pytest
from run_helpers import wait_for

from e2wm.cli import main
from e2wm.collect.config import CollectConfig
from e2wm.collect.run import MANIFEST, collect, plan_units
from e2wm.config import read_yaml
from e2wm.errors import E2WMError
from e2wm.world.activities import library_digest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# "go to sleep" (lie on the bed, light off) fits every apartment and is never already done there.
JOB = {"plans": 40, "explorations": 120, "stories": 40, "scenes": 10, "activities": ["go to sleep"],
       "mcts": {"simulations": 60}, "shard_size": 20}


def _cfg(out, **kw) -> CollectConfig:
    return CollectConfig.from_dict({**JOB, "out": str(out), **kw})


def _episodes(out):
    rows = []
    for name in sorted(os.listdir(out)):
        if name.startswith("shard-"):
            rows += [json.loads(line) for line in (out / name).read_text().splitlines()]
    return rows


@pytest.mark.slow
def test_kills_and_worker_count_do_not_change_the_output(tmp_path):
    chaos = collect(_cfg(tmp_path / "chaos", workers=2, chaos_kill_every=25), log=lambda *a: None)
    clean = collect(_cfg(tmp_path / "clean", workers=2), log=lambda *a: None)
    single = collect(_cfg(tmp_path / "single", workers=1), log=lambda *a: None)
    manifest = json.loads((tmp_path / "chaos" / MANIFEST).read_text())
    assert manifest["episodes"] == 200 and manifest["failures"] == 0
    rows = _episodes(tmp_path / "chaos")
    assert len(rows) == 200 and len({r["key"] for r in rows}) == 200
    assert sorted(r["unit"] for r in rows) == list(range(200))
    assert chaos["restarts"] >= 3          # 200 units / 2 workers / a kill every 25
    assert chaos["content_hash"] == clean["content_hash"] == single["content_hash"]
    for name in os.listdir(tmp_path / "clean"):
        if name.startswith("shard-"):
            assert (tmp_path / "chaos" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


@pytest.mark.slow
def test_killed_driver_resumes_without_duplicates(tmp_path):
    args = [sys.executable, "-m", "e2wm.cli", "collect", "--plans", "24", "--explorations", "24",
            "--stories", "0", "--scenes", "6", "--simulations", "1500", "--shard-size", "4", "--workers", "2",
            "--activity", "go to sleep"]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    out = tmp_path / "killed"
    p = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    m = out / MANIFEST
    wait_for(lambda: p.poll() is not None or (m.exists() and 2 <= len(json.loads(m.read_text())["shards"]) < 12),
             120, "two shards in the manifest")
    assert p.poll() is None, "the job finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    done_before = len(json.loads((out / MANIFEST).read_text())["shards"])
    assert 2 <= done_before < 12
    r = subprocess.run(args + ["--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ref = subprocess.run(args + ["--out", str(tmp_path / "ref")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    resumed = json.loads((out / MANIFEST).read_text())
    assert resumed["episodes"] == 48
    rows = _episodes(out)
    assert len(rows) == 48 and len({r["key"] for r in rows}) == 48
    assert resumed["content_hash"] == json.loads((tmp_path / "ref" / MANIFEST).read_text())["content_hash"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped_resumed"] == 4 * done_before


@pytest.mark.slow
def test_deterministic_failures_are_recorded_and_do_not_stall(tmp_path, monkeypatch):
    # Units asking for "watch tv" in apartments without a television fail; the rest run.
    from e2wm.collect import run
    from e2wm.collect.pool import Unit
    from e2wm.world.activities import get_activity
    from e2wm.world.graph import Scene
    from e2wm.world.procedural import generate_apartment
    tv = get_activity("watch tv")
    bare = [s for s in range(40) if not tv.fits(Scene.from_dict(generate_apartment(s)))][:6]
    units = [Unit(k, "plan", f"procedural:{bare[k % 6]}" if k % 2 else "procedural:0", "go to sleep"
                  if not k % 2 else "watch tv") for k in range(12)]
    monkeypatch.setattr(run, "plan_units", lambda cfg: units)
    cfg = _cfg(tmp_path / "f", plans=12, explorations=0, stories=0, shard_size=5, workers=1)
    stats = collect(cfg, log=lambda *a: None)
    failures = [json.loads(x) for x in (tmp_path / "f" / "failures.jsonl").read_text().splitlines()]
    assert [f["unit"] for f in failures] == [1, 3, 5, 7, 9, 11]
    assert all("television" in f["error"] for f in failures)
    assert stats["episodes"] == 6 and stats["failures"] == 6


def test_units_are_a_pure_function_of_the_config(tmp_path):
    a, b = plan_units(_cfg(tmp_path)), plan_units(_cfg(tmp_path / "elsewhere", workers=7))
    assert a == b and len(a) == 200
    assert [u.index for u in a] == list(range(200))
    assert {u.kind for u in a[:40]} == {"plan"} and {u.kind for u in a[40:160]} == {"explore"}
    assert {u.kind for u in a[160:]} == {"story"}


def test_plans_rotate_so_every_activity_is_collected(tmp_path):
    from e2wm.world.activities import ALL_ACTIVITIES, UNSEEN_NAMES
    units = plan_units(_cfg(tmp_path, plans=len(ALL_ACTIVITIES), activities=[], scenes=40))
    assert sorted(u.activity for u in units if u.kind == "plan") == sorted(a.name for a in ALL_ACTIVITIES)
    first = [u.activity for u in units[:12]]
    assert set(first) & UNSEEN_NAMES and set(first) - UNSEEN_NAMES   # held-out ones spread through
    # Each unit's apartment can pose its activity, and one activity's plans spread over apartments.
    twice = plan_units(_cfg(tmp_path, plans=2 * len(ALL_ACTIVITIES), activities=[], scenes=40))
    by = {}
    for u in twice:
        by.setdefault(u.activity, set()).add(u.scene)
    assert sum(len(v) == 2 for v in by.values()) > 0.8 * len(by)


@pytest.mark.slow
def test_a_different_job_in_the_same_directory_is_refused(tmp_path):
    collect(_cfg(tmp_path, plans=0, explorations=4, shard_size=2, workers=1), log=lambda *a: None)
    with pytest.raises(E2WMError, match="different job"):
        collect(_cfg(tmp_path, plans=0, explorations=5, shard_size=2, workers=1), log=lambda *a: None)
    shard = tmp_path / "shard-00000.jsonl"
    shard.write_text(shard.read_text().replace('"explore"', '"plan"', 1))
    with pytest.raises(E2WMError, match="altered"):
        collect(_cfg(tmp_path, plans=0, explorations=4, shard_size=2, workers=1), log=lambda *a: None)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(E2WMError, match="corrupt manifest"):
        collect(_cfg(tmp_path, plans=0, explorations=4, shard_size=2, workers=1), log=lambda *a: None)


def test_config_errors_name_file_and_field(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("plans: 3\nworkerz: 2\n")
    data, where = read_yaml(f, "collect.yaml")
    with pytest.raises(E2WMError, match=r"job.yaml: unknown key\(s\) workerz"):
        CollectConfig.from_dict(data, where)
    f.write_text("plans: [3\n")
    with pytest.raises(E2WMError, match=r"job.yaml:\d+:\d+: malformed YAML"):
        read_yaml(f, "collect.yaml")
    with pytest.raises(E2WMError, match=r"unknown key\(s\) mcts\.simulatons"):
        CollectConfig.from_dict({"mcts": {"simulatons": 3}})
    with pytest.raises(E2WMError, match="shard_size"):
        CollectConfig(shard_size=0)
    preset, _ = read_yaml(None, "collect.yaml")
    assert CollectConfig.from_dict(preset).plans > 0


def test_job_dict_holds_every_job_field_and_no_run_field():
    preset, _ = read_yaml(None, "collect.yaml")
    cfg = CollectConfig.from_dict({**preset, "workers": 5})
    job = cfg.job_dict()
    assert {"plans", "explorations", "stories", "mcts", "explore", "story"} <= set(job)
    assert not {"out", "workers", "worker_cpus", "max_in_flight", "address", "chaos_kill_every"} & set(job)
    assert job.pop("library") == library_digest()    # procedural apartments pose the library's goals
    assert cfg.to_dict() == {**job, "out": "out/collect", "workers": 5, "worker_cpus": 1.0,
                             "max_in_flight": 2, "address": "local", "chaos_kill_every": 0}
    robothow = CollectConfig.from_dict({**preset, "scene_source": "robothow"}).job_dict()
    assert "library" not in robothow


def test_a_changed_library_is_another_job(monkeypatch):
    """A resume under an edited activity library must not mix its episodes with the old library's."""
    from e2wm.world import activities
    preset, _ = read_yaml(None, "collect.yaml")
    before = CollectConfig.from_dict(preset).job_dict()
    a = activities.ALL_ACTIVITIES[0]
    edited = activities.Activity(a.name, a.goals[:-1])   # one goal spec fewer
    monkeypatch.setattr(activities, "ALL_ACTIVITIES", (edited, *activities.ALL_ACTIVITIES[1:]))
    assert CollectConfig.from_dict(preset).job_dict()["library"] != before["library"]


@pytest.mark.slow
def test_an_output_of_another_engine_version_is_refused(tmp_path):
    cfg = _cfg(tmp_path, plans=0, explorations=2, stories=0, shard_size=2, workers=1)
    collect(cfg, log=lambda *a: None)
    m = json.loads((tmp_path / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(json.dumps({**m, "engine": "e2wm-world/1"}))
    with pytest.raises(E2WMError, match="engine e2wm-world/1"):
        collect(cfg, log=lambda *a: None)


def _cli_config(monkeypatch, *args) -> CollectConfig:
    """The config `e2wm collect ARGS` would run, stopped before Ray starts."""
    class Built(Exception):
        pass

    def stop(cfg, **kw):
        raise Built(cfg)
    monkeypatch.setattr("e2wm.collect.run.collect", stop)
    with pytest.raises(Built) as e:
        main(["collect", *args])
    return e.value.args[0]


def test_cli_flags_override_the_file_and_set_overrides_both(tmp_path, monkeypatch):
    f = tmp_path / "job.yaml"
    f.write_text("plans: 5\nscenes: 3\nmcts:\n  simulations: 100\n  max_depth: 10\n")
    flags = ["--config", str(f), "--plans", "6", "--simulations", "200", "--worker-cpus", "0.5"]
    cfg = _cli_config(monkeypatch, *flags, "--activity", "go to sleep", "--activity", "watch tv")
    assert (cfg.plans, cfg.scenes, cfg.worker_cpus) == (6, 3, 0.5)
    assert (cfg.mcts.simulations, cfg.mcts.max_depth) == (200, 10)
    assert cfg.activities == ("go to sleep", "watch tv")
    cfg = _cli_config(monkeypatch, *flags, "--set", "plans=7", "--set", "mcts.simulations=300",
                      "--set", "mcts.max_depth=20", "--set", "explore.mix=[[grab, 1]]")
    assert (cfg.plans, cfg.mcts.simulations, cfg.mcts.max_depth) == (7, 300, 20)
    assert cfg.explore.mix == (("grab", 1.0),)


@pytest.mark.parametrize("setting, names", [
    ("mcts.simulations=x", "mcts.simulations: expected an int, got 'x'"),
    ("mcts.simulatons=3", "unknown key(s) mcts.simulatons"),
    ("mcts=3", "mcts: expected a mapping"),
    ("workers=0", "workers=0: must be in [1, 4096]"),
])
def test_a_bad_set_prints_one_line_naming_the_field(setting, names, capsys, monkeypatch):
    monkeypatch.setattr("e2wm.collect.run.collect", lambda *a, **kw: pytest.fail("collected"))
    assert main(["collect", "--set", setting]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and names in lines[0]
    assert lines[0].startswith("e2wm: error: preset collect.yaml + command line: ")


def test_robothow_source_plans_toward_each_programs_goal(tmp_path):
    pytest.importorskip("virtualhome_eval")
    from e2wm.world.scenes import robothow_programs
    names = [p.name for p in robothow_programs()][5:8]
    units = plan_units(_cfg(tmp_path, scene_source="robothow", scene_first=5, scenes=3, plans=7,
                            explorations=2, stories=0))
    assert [u.scene for u in units[:7]] == [f"robothow:{names[k % 3]}" for k in range(7)]
    assert all(u.activity is None for u in units[:7])
    assert [u.scene for u in units[7:]] == ["procedural:5", "procedural:6"]
    with pytest.raises(E2WMError, match="scene_source"):
        _cfg(tmp_path, scene_source="unity")
