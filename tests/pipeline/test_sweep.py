"""The pipeline's `sweep` section (issue 24): one config expands into a grid of training runs (swept train keys ×
seeds), each run also exported and evaluated at its snapshot steps; the train and eval stages resume run by
run and evaluation by evaluation, and the report lists every evaluated point in runs.json."""
import json
import shutil

import pytest

from e2wm.cli import main
from e2wm.errors import E2WMError
from e2wm.pipeline.config import PipelineConfig

RUNS = {"lora": {"regularizer": {"kind": "none"}}, "ewc_lora": {"regularizer": {"kind": "ewc_lora"}}}
SWEEP = {"seeds": [1, 2, 3], "grid": {"ewc_lora": {"regularizer.lam": [0.1, 1, 10, 100, 1000]},
                                      "lora": {"optim.lr": [1.0e-3, "3e-3"]}},
         "snapshots": [40, 20]}


def test_a_sweep_expands_into_the_product_of_its_values_and_seeds():
    cfg = PipelineConfig.from_dict({"runs": RUNS, "sweep": SWEEP})
    runs = cfg.expanded_runs()
    lams, lrs = ("0.1", "1", "10", "100", "1000"), ("0.001", "0.003")
    assert list(runs) == ([f"lora.lr={v}.s{s}" for v in lrs for s in (1, 2, 3)]
                          + [f"ewc_lora.lam={v}.s{s}" for v in lams for s in (1, 2, 3)])
    r = runs["ewc_lora.lam=10.s2"]
    assert (r.arm, r.values, r.seed) == ("ewc_lora", {"regularizer.lam": 10.0}, 2)
    assert r.overrides == {"regularizer": {"lam": 10.0}, "seed": 2, "checkpoint": {"snapshots": [40, 20]}}
    assert runs["lora.lr=0.003.s3"].values == {"optim.lr": 0.003}   # YAML's 3e-3 (a string) as the key's type
    tc = cfg.train_config("ewc_lora.lam=10.s2", "OUT", "MODEL")
    assert (tc.seed, tc.regularizer.lam, tc.regularizer.kind, tc.checkpoint.snapshots, tc.out, tc.regularizer.fisher) \
        == (2, 10.0, "ewc_lora", (40, 20), "OUT/train/ewc_lora.lam=10.s2", "OUT/fisher")
    tc = cfg.train_config("lora.lr=0.001.s1", "OUT", "MODEL")
    assert (tc.seed, tc.optim.lr, tc.regularizer.kind) == (1, 1e-3, "none")
    assert cfg.run_kinds() == {n: "none" if n.startswith("lora.") else "ewc_lora" for n in runs}


def test_two_swept_keys_and_no_seeds():
    cfg = PipelineConfig.from_dict({"runs": RUNS, "sweep": {"grid": {"lora": {
        "optim.lr": [0.01, 0.02], "lora.r": [4, 8]}}}})
    assert list(cfg.expanded_runs()) == ["lora.lr=0.01.r=4", "lora.lr=0.01.r=8", "lora.lr=0.02.r=4",
                                         "lora.lr=0.02.r=8", "ewc_lora"]
    run = cfg.expanded_runs()["ewc_lora"]
    assert (run.arm, run.values, run.seed, run.overrides) == ("ewc_lora", {}, None, {})
    assert cfg.train_config("lora.lr=0.02.r=4", "OUT", "MODEL").lora.r == 4


def test_without_a_sweep_the_runs_and_hashes_are_todays():
    from e2wm.pipeline.run import _hashes
    plain = PipelineConfig.from_dict({"runs": RUNS})
    assert not plain.sweep.active
    assert {n: (r.arm, r.overrides) for n, r in plain.expanded_runs().items()} == {n: (n, {}) for n in RUNS}
    assert _hashes(PipelineConfig.from_dict({"runs": RUNS, "sweep": {}})) == _hashes(plain)
    swept = _hashes(PipelineConfig.from_dict({"runs": RUNS, "sweep": {"seeds": [1]}}))
    assert swept["fisher"] == _hashes(plain)["fisher"] and swept["train"] != _hashes(plain)["train"]


@pytest.mark.parametrize("sweep, names", [
    ({"grid": {"ewc_lora": {"regularizer.lamda": [1]}}}, ["sweep.grid.ewc_lora.regularizer.lamda", "unknown train key",
                                                         "known: corpus"]),
    ({"grid": {"ewc_lora": {"optim.lr.x": [1]}}}, ["sweep.grid.ewc_lora.optim.lr.x", "optim.lr is not a section"]),
    ({"grid": {"ewc_lora": {"regularizer": [1]}}}, ["sweep.grid.ewc_lora.regularizer", "is a section"]),
    ({"grid": {"ewc_lora": {"regularizer.lam": []}}}, ["sweep.grid.ewc_lora.regularizer.lam", "empty list"]),
    ({"grid": {"ewc_lora": {"regularizer.lam": 3}}}, ["sweep.grid.ewc_lora.regularizer.lam", "expected a list"]),
    ({"grid": {"ewc_lora": {}}}, ["sweep.grid.ewc_lora", "no key to sweep"]),
    ({"grid": {"kl": {"regularizer.lam": [1]}}}, ["sweep.grid.kl", "no run kl in runs", "lora, ewc_lora"]),
    ({"grid": {"ewc_lora": {"regularizer.lam": [1, 1.0]}}}, ["sweep.grid.ewc_lora.regularizer.lam", "twice"]),
    ({"grid": {"ewc_lora": {"regularizer.lam": ["x"]}}}, ["sweep.grid.ewc_lora.regularizer.lam[0]", "a number"]),
    ({"grid": {"ewc_lora": {"regularizer.lam": [-1]}}}, ["runs.ewc_lora", "ewc_lora.lam=-1", "regularizer.lam"]),
    ({"grid": {"ewc_lora": {"seed": [1, 2]}}}, ["sweep.grid.ewc_lora.seed", "sweep.seeds"]),
    ({"grid": {"ewc_lora": {"data.path": ["a"]}}}, ["sweep.grid.ewc_lora.data.path", "the pipeline's data"]),
    ({"grid": {"lora": {"deepspeed.config": ["my ds.json"]}}}, ["sweep.grid.lora.deepspeed.config",
                                                                "cannot name a run"]),
    ({"snapshots": [0]}, ["sweep.snapshots[0]=0"]),
    ({"snapshots": [-5]}, ["sweep.snapshots[0]=-5"]),
    ({"snapshots": [3, 3]}, ["sweep.snapshots", "twice"]),
    ({"seeds": [1, 1]}, ["sweep.seeds", "twice"]),
    ({"seeds": [-1]}, ["sweep.seeds[0]=-1"]),
    ({"grids": {}}, ["sweep.grids"]),
])
def test_a_bad_sweep_is_one_line_naming_the_key(sweep, names):
    with pytest.raises(E2WMError) as e:
        PipelineConfig.from_dict({"runs": RUNS, "sweep": sweep})
    message = str(e.value)
    assert "\n" not in message and all(n in message for n in names), message


def test_check_lists_every_run_of_the_sweep(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pipeline", "--check", "--out", str(out), "--set", "sweep.seeds=[1, 2]",
                 "--set", "sweep.grid.ewc_lora={regularizer.lam: [1, 10]}", "--set", "sweep.snapshots=[5]"]) == 0
    printed = capsys.readouterr().out
    assert "sweep: 6 run(s) from 2 arm(s)" in printed and "snapshots at steps 5" in printed
    for run in ("lora.s1", "lora.s2", "ewc_lora.lam=1.s1", "ewc_lora.lam=10.s2"):
        assert f"runs.{run}: 16 rows per step" in printed
    assert not out.exists()


# ---------------------------------------------------------------- a tiny sweep, killed and resumed

def _tiny(out, model) -> dict:
    """The tiny model, 2 steps a run, a snapshot at step 1 (and one at 5, past the end: not taken)."""
    return {"out": str(out), "corpus": "builtin:pydoc", "model": {"base": str(model)},
            "fisher": {"max_samples": 8, "max_length": 32, "micro_batch": 8, "checkpoint_every": 0},
            "train": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "data": {"max_length": 64},
                      "optim": {"max_steps": 2, "lr": 1e-2, "global_batch_size": 4, "micro_batch_size": 4,
                                "precision": "fp32"},
                      "checkpoint": {"every": 0}, "logging": {"tensorboard": False}},
            "runs": {"lora": {"regularizer": {"kind": "none"}}},
            "sweep": {"seeds": [1, 2], "grid": {"lora": {"optim.lr": [0.01, 0.03]}}, "snapshots": [1, 5]},
            "eval": {"limit": 1, "num_beams": 1, "max_new_tokens": 4, "ppl_docs": 12, "ppl_max_length": 32}}


RUN_NAMES = ["lora.lr=0.01.s1", "lora.lr=0.01.s2", "lora.lr=0.03.s1", "lora.lr=0.03.s2"]


class Killed(Exception):
    pass


def _kill_at(step):
    def hook(done):
        if done == step:
            raise Killed(f"killed at step {step}")
    return hook


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_repeating_finished_runs(tmp_path, tiny_model_dir, built_dataset,
                                                               monkeypatch, capsys):
    from e2wm.pipeline import launch
    from e2wm.pipeline.run import _hashes, pipeline
    from e2wm.pipeline.state import State
    from e2wm.train import recipe
    out = tmp_path / "run"
    cfg = PipelineConfig.from_dict(_tiny(out, tiny_model_dir))
    shutil.copytree(built_dataset, out / "data")   # collect and data as if run
    state, hashes = State(out), _hashes(cfg)
    for stage in ("collect", "data"):
        state.mark(stage, hashes[stage], True)

    real, calls = launch.run_stage, []

    def counted(kill: dict):
        """run_stage, recording each call; kill["train"] = k: run k is killed after its first step (and its
        snapshot); kill["eval"] = k: killed before evaluation k."""
        def run_stage(entry, c, **kw):
            k = sum(e == entry for e, _ in calls) + 1
            if entry == "eval" and kill.get("eval") == k:
                raise Killed(f"killed before {c.out}")
            calls.append((entry, c.out.rsplit("/", 1)[-1]))
            hooks = [_kill_at(1)] if entry == "train" and kill.get("train") == k else []
            monkeypatch.setattr(recipe, "STEP_HOOKS", hooks)
            real(entry, c, **kw)
        return run_stage

    def run(kill):
        calls.clear()
        monkeypatch.setattr(launch, "run_stage", counted(kill))
        lines = []
        pipeline(cfg, stages=("model", "fisher", "train", "eval", "report"), log=lines.append)
        return lines

    with pytest.raises(Killed):   # killed in the third run, after its first step
        run({"train": 3})
    assert [n for e, n in calls if e == "train"] == RUN_NAMES[:3]
    done = json.loads((out / "pipeline.json").read_text())
    assert not done["stages"]["train"]["done"] and list(done["parts"]["train"]) == RUN_NAMES[:2]
    assert (out / "train" / RUN_NAMES[2] / "snapshots" / "step-1").is_dir()

    capsys.readouterr()
    with pytest.raises(Killed):   # the third run resumed, the fourth; then killed before the fourth evaluation
        run({"eval": 4})
    assert [n for e, n in calls if e == "train"] == RUN_NAMES[2:]
    assert capsys.readouterr().out.count(f"(resumed from {out / 'train' / RUN_NAMES[2] / 'checkpoints'}") == 1
    assert [n for e, n in calls if e == "eval"] == ["base", "lora.lr=0.01.s1@step-1", "lora.lr=0.01.s1"]
    assert [n for e, n in calls if e == "fisher"] == []

    lines = run({})   # the six evaluations left, then the report
    assert "  lora.lr=0.01.s1: evaluated earlier, skipped" in lines
    evaluated = [n for e, n in calls if e == "eval"]
    assert [e for e, _ in calls] == ["eval"] * 6 and evaluated == [
        f"{r}{k}" for r in RUN_NAMES for k in ("@step-1", "")][2:]
    for r in RUN_NAMES:
        snaps = out / "train" / r / "snapshots"
        assert sorted(p.name for p in snaps.iterdir()) == ["step-1"]
        assert (out / "eval" / f"{r}@step-1" / "results.json").is_file() and not (out / "eval" / f"{r}@step-5").exists()

    points = json.loads((out / "report" / "runs.json").read_text())["points"]
    assert len(points) == 9 and points[0] == {"run": "base", "arm": "base", "kind": None, "seed": None, "values": {},
                                              "step": 0, "final": False, "eval": "eval/base"}
    assert points[3] == {"run": "lora.lr=0.01.s2", "arm": "lora", "kind": "none", "seed": 2,
                         "values": {"optim.lr": 0.01}, "step": 1, "final": False,
                         "eval": "eval/lora.lr=0.01.s2@step-1"}
    assert points[8] == {"run": "lora.lr=0.03.s2", "arm": "lora", "kind": "none", "seed": 2,
                         "values": {"optim.lr": 0.03}, "step": 2, "final": True, "eval": "eval/lora.lr=0.03.s2"}
    assert all((out / p["eval"] / "results.json").is_file() for p in points)
    md = (out / "report" / "report.md").read_text()
    assert "| suite | metric | base | " + " | ".join(RUN_NAMES) + " |" in md

    parts = json.loads((out / "pipeline.json").read_text())["parts"]   # each finished part recorded
    assert list(parts["train"]) == RUN_NAMES and len(parts["eval"]) == 9
    run({})   # all done: nothing runs again
    assert calls == []


def test_the_default_config_keeps_its_stage_hashes():
    """The default config's stage hashes, pinned: a pipeline finished under them resumes rather than redo its
    Fisher and everything after. `fisher.precision` and `fisher.gradient_checkpointing` left them as they were
    (commit 8ac9db2: 800615d8… and 6e48025f…); the goal-aware planner and the library's restored goals changed
    them, on purpose: another collection, which every later stage's hash covers."""
    from e2wm.pipeline.run import _hashes
    before = {"fisher": "d38e47077d8fb524f8439952f936f09a54d471c8315a8f178d8cf27a9ad0b58c",
              "train": "970fa1de5a6adbbdc281bf201dcb5dd01d4626e05c1f04c01916f201eef0cbba"}
    now = _hashes(PipelineConfig.from_dict({}))
    assert {k: now[k] for k in before} == before
    ckpt = _hashes(PipelineConfig.from_dict({"fisher": {"gradient_checkpointing": True}}))
    assert ckpt["fisher"] == before["fisher"]      # memory for time: F is the same
    bf16 = _hashes(PipelineConfig.from_dict({"fisher": {"precision": "bf16"}}))
    assert bf16["fisher"] != before["fisher"]      # another F
