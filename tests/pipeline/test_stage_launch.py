"""The stage launcher: the Fisher and training stages of a tiny setup on 2 Ray Train workers (gloo) give the
same Fisher and the same adapter as on 2 torchrun ranks; a failing stage is one E2WMError line naming it."""
import contextlib
import os

import pytest
import torch
from safetensors.torch import load_file

from e2wm.cli import main
from e2wm.config import build
from e2wm.errors import E2WMError
from e2wm.pipeline.launch import run_stage
from e2wm.train.config import TrainConfig
from e2wm.train.dist import ERROR_DIR
from e2wm.train.fisher_config import FisherConfig

os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # no token file, no clash with a developer's cluster
RAY_LAUNCHERS = ("deepspeed", "ray")


def _train_config(**fields) -> TrainConfig:
    return build(TrainConfig, {"regularizer": {"kind": "none"}, **fields})


@pytest.fixture(scope="module")
def ray_cluster():
    """A private 2-CPU Ray instance: the 2 Ray Train workers take one CPU each."""
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, built_dataset, ray_cluster):
    """{launcher: run folder} after the Fisher and a 3-step ZeRO-2 EWC-LoRA training, 2 ranks each."""
    out = {}
    for launcher in RAY_LAUNCHERS:
        root = tmp_path_factory.mktemp(launcher)
        run_stage("fisher", FisherConfig(model=str(tiny_model_dir), max_samples=8, max_length=48, micro_batch=2,
                                         zero_stage=2, out=str(root / "fisher")),
                  launcher=launcher, workers=2, log=lambda line: None)
        cfg = build(TrainConfig, {
            "seed": 3, "out": str(root / "run"), "model": {"name_or_path": str(tiny_model_dir)},
            "lora": {"r": 8, "alpha": 32, "dropout": 0.0},
            "data": {"path": str(built_dataset), "max_length": 128},
            "optim": {"lr": 1e-2, "max_steps": 3, "global_batch_size": 4, "micro_batch_size": 2,
                      "precision": "fp32"},
            "regularizer": {"kind": "ewc_lora", "lam": 1000.0, "fisher": str(root / "fisher")},
            "deepspeed": {"config": "zero2"}, "checkpoint": {"every": 0, "resume": "never"},
            "logging": {"every": 1, "tensorboard": False}})
        run_stage("train", cfg, launcher=launcher, workers=2, log=lambda line: None)
        assert main(["export", str(root / "run"), "--out", str(root / "adapter")]) == 0
        out[launcher] = root
    return out


def _max_rel_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b) and a
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a)


@pytest.mark.slow
def test_ray_train_workers_give_the_fisher_and_adapter_of_torchrun(runs):
    ds, ray_ = runs["deepspeed"], runs["ray"]
    fisher_ds, fisher_ray = (load_file(r / "fisher" / "fisher.safetensors") for r in (ds, ray_))
    assert _max_rel_diff(fisher_ray, fisher_ds) <= 1e-6
    adapter_ds, adapter_ray = (load_file(r / "adapter" / "adapter_model.safetensors") for r in (ds, ray_))
    # same world size, backend, data split and threads per rank: the same floating-point operations
    for k in adapter_ds:
        assert torch.equal(adapter_ray[k], adapter_ds[k]), k
    trained = [k for k in adapter_ds if "lora_B" in k]
    assert trained and all(adapter_ds[k].abs().max() > 0 for k in trained)   # training moved the adapter


@pytest.mark.parametrize("launcher", ["local"] + [pytest.param(n, marks=pytest.mark.slow) for n in RAY_LAUNCHERS])
def test_a_failing_stage_is_one_error_naming_it(launcher, tmp_path, request, capsys):
    if launcher == "ray":
        request.getfixturevalue("ray_cluster")
    workers = 1 if launcher == "local" else 2
    lines = []
    with pytest.raises(E2WMError) as e:
        run_stage("fisher", FisherConfig(model=str(tmp_path / "no-model"), out=str(tmp_path / "f")),
                  launcher=launcher, workers=workers, log=lines.append)
    message = str(e.value)
    assert "\n" not in message and message.startswith("stage fisher failed")
    assert f"--model: {tmp_path / 'no-model'}" in message
    assert not (tmp_path / "f").exists()
    with pytest.raises(E2WMError, match="stage train failed.*no-data"):
        run_stage("train", _train_config(out=str(tmp_path / "run"), data={"path": str(tmp_path / "no-data")}),
                  launcher=launcher, workers=workers, log=lines.append)
    # the stage's own error line comes back in the E2WMError only, not also in the log
    assert not [ln for ln in lines + capsys.readouterr().err.splitlines() if "e2wm: error" in ln]


def test_local_launcher_runs_one_rank_only():
    with pytest.raises(E2WMError, match="stage train: the local launcher runs 1 rank"):
        run_stage("train", _train_config(), launcher="local", workers=2)


def _launched(monkeypatch, ranks_write=()):
    """run_stage("train") under the deepspeed launcher on CPU, its processes faked: each (rank, exception) of
    `ranks_write` is recorded by `guarded` as that rank would; returns (the env the launcher gave, the error)."""
    from e2wm.pipeline import launch
    from e2wm.train.dist import guarded
    seen = {}

    def ranks(cmd, env, log):
        seen.update(env)
        for rank, error in ranks_write:
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv(ERROR_DIR, env[ERROR_DIR])

            def fail(error=error):
                raise error
            with contextlib.suppress(Exception):
                guarded(fail)
        return 1 if ranks_write else 0
    monkeypatch.setattr(launch, "_stream", ranks)
    try:
        run_stage("train", _train_config(), launcher="deepspeed", workers=2, log=lambda line: None)
    except E2WMError as e:
        return seen, str(e)
    return seen, None


@pytest.mark.parametrize("user", [None, "0", "1"])
def test_a_launched_cpu_stage_gets_the_users_hub_setting(user, monkeypatch):
    if user is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", user)
    env, error = _launched(monkeypatch)
    assert error is None and env.get("HF_HUB_OFFLINE") == user


def test_a_launched_stage_fails_with_what_its_ranks_recorded(monkeypatch, capsys):
    # the lowest rank's bad input wins over a crash; a rank under the launcher prints no line of its own
    env, error = _launched(monkeypatch, [(0, ValueError("boom\nsecond line")), (3, E2WMError("c.yaml: bad")),
                                         (1, E2WMError("b.yaml: bad"))])
    assert error == "stage train failed (exit 1): b.yaml: bad"
    assert "e2wm: error" not in capsys.readouterr().err
    assert not os.path.exists(env[ERROR_DIR])   # the run's error folder goes with it
    _, error = _launched(monkeypatch, [(1, ValueError("boom\n  second line"))])
    assert error == "stage train failed (exit 1): ValueError: boom second line"


def test_guarded_prints_bad_input_on_rank_0_only_without_a_launcher_folder(monkeypatch, capsys):
    from e2wm.train.dist import guarded
    monkeypatch.delenv(ERROR_DIR, raising=False)

    def bad():
        raise E2WMError("x.yaml: no such config file")
    for rank, shown in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert guarded(bad) == 2
        assert ("e2wm: error: x.yaml: no such config file" in capsys.readouterr().err) == shown


@pytest.mark.parametrize("stage", ["fisher", "train", "eval"])
def test_a_ranks_config_file_gives_back_the_stages_config(stage, tmp_path, monkeypatch):
    """A launched rank reads its stage's config from the JSON file the pipeline wrote (e2wm.pipeline.rank):
    it must be the very config the pipeline made, every field."""
    import importlib
    import json

    from e2wm.config import to_plain
    from e2wm.files import write_json
    from e2wm.pipeline import launch
    from e2wm.pipeline.config import PipelineConfig
    cfg = PipelineConfig.from_dict({"launcher": "deepspeed", "workers": 2,
                                    "eval": {"limit": 3, "num_beams": 2, "ppl_docs": 12, "ppl_stride": 64},
                                    "fisher": {"micro_batch": 3, "lora_targets": "q_proj,v_proj"},
                                    "runs": {"kl": {"regularizer": {"kind": "kl"}}}})
    made = {"fisher": lambda: cfg.fisher_config(str(tmp_path), "tiny", 7),
            "train": lambda: cfg.train_config("kl", str(tmp_path), "tiny", range(7, 30)),
            "eval": lambda: cfg.eval_config(str(tmp_path), "tiny", str(tmp_path / "adapter"), "kl")}[stage]()
    seen = []
    monkeypatch.setattr(importlib.import_module(launch.ENTRIES[stage]), "run", lambda c, log=print: seen.append(c))
    write_json(tmp_path / "config.json", to_plain(made))
    launch.run_entry(stage, json.loads((tmp_path / "config.json").read_text()))
    assert seen == [made]


@pytest.mark.parametrize("bad", [-2, 1.5, True, "3"])
def test_max_failures_outside_its_range_is_one_line(bad):
    with pytest.raises(E2WMError, match="max_failures"):
        run_stage("train", _train_config(), launcher="ray", max_failures=bad)


def test_ray_train_gets_the_restarts_the_timeout_and_the_drivers_folder(monkeypatch, tmp_path):
    """What `_fit` hands Ray Train: FailureConfig(max_failures), the collectives' timeout (Ray Train makes the
    process group, so E2WM_DIST_TIMEOUT_S must reach it through TorchConfig) and the driver's folder, where a
    worker resolves a relative --out. The real restart after a lost node is tests/multinode/test_ray_nodes.py."""
    import ray.train.torch as rtt

    from e2wm.pipeline import launch
    seen = {}

    class Recorder:
        def __init__(self, **kw):
            seen.update(kw)

        def fit(self):
            return None

    monkeypatch.setattr(rtt, "TorchTrainer", Recorder)
    monkeypatch.setenv("E2WM_DIST_TIMEOUT_S", "1234")
    monkeypatch.chdir(tmp_path)
    try:
        launch._fit("train", {"out": "run"}, 2, False, max_failures=3)
    except Exception:   # the key-value store cleanup needs a running Ray; what reached Ray Train is recorded
        pass
    assert seen["run_config"].failure_config.max_failures == 3
    assert seen["torch_config"].timeout_s == 1234
    assert seen["train_loop_config"]["cwd"] == str(tmp_path)


def test_a_restarted_training_resumes_from_the_latest_checkpoint(tmp_path):
    from e2wm.pipeline.launch import _resume_latest
    from e2wm.train.checkpoint import STATE
    cfg = {"out": str(tmp_path), "checkpoint": {"resume": "never", "every": 2}}
    assert _resume_latest(cfg) == cfg                      # nothing saved yet: as configured
    step = tmp_path / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (step / STATE).write_text("{}")
    assert _resume_latest(cfg)["checkpoint"] == {"resume": "auto", "every": 2}
