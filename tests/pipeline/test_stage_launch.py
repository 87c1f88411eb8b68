"""The stage launcher: the Fisher and training stages of a tiny setup on 2 Ray Train workers (gloo) give the
same Fisher and the same adapter as on 2 torchrun ranks; a failing stage is one E2WMError line naming it."""
import os

import pytest
import torch
import yaml
from safetensors.torch import load_file

from e2wm.cli import main
from e2wm.errors import E2WMError
from e2wm.pipeline.launch import run_stage

os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # no token file, no clash with a developer's cluster
RAY_LAUNCHERS = ("deepspeed", "ray")


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
        run_stage("fisher", ["--model", tiny_model_dir, "--corpus", "builtin:pydoc", "--max-samples", "8",
                             "--max-length", "48", "--micro-batch", "2", "--zero-stage", "2",
                             "--out", root / "fisher"], launcher=launcher, workers=2, log=lambda line: None)
        cfg = root / "train.yaml"
        cfg.write_text(yaml.safe_dump({
            "seed": 3, "out": str(root / "run"), "model": {"name_or_path": str(tiny_model_dir)},
            "lora": {"r": 8, "alpha": 32, "dropout": 0.0},
            "data": {"path": str(built_dataset), "max_length": 128},
            "optim": {"lr": 1e-2, "max_steps": 3, "global_batch_size": 4, "micro_batch_size": 2,
                      "precision": "fp32"},
            "regularizer": {"kind": "ewc_lora", "lam": 1000.0, "fisher": str(root / "fisher")},
            "deepspeed": {"config": "zero2"}, "checkpoint": {"every": 0, "resume": "never"},
            "logging": {"every": 1, "tensorboard": False}}))
        run_stage("train", ["--config", cfg], launcher=launcher, workers=2, log=lambda line: None)
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
        run_stage("fisher", ["--model", tmp_path / "no-model", "--out", tmp_path / "f"], launcher=launcher,
                  workers=workers, log=lines.append)
    message = str(e.value)
    assert "\n" not in message and message.startswith("stage fisher failed")
    assert f"--model: {tmp_path / 'no-model'}" in message
    assert not (tmp_path / "f").exists()
    with pytest.raises(E2WMError, match="stage train failed.*no.yaml: no such config file"):
        run_stage("train", ["--config", tmp_path / "no.yaml"], launcher=launcher, workers=workers,
                  log=lines.append)
    # the stage's own error line comes back in the E2WMError only, not also in the log
    assert not [ln for ln in lines + capsys.readouterr().err.splitlines() if "e2wm: error" in ln]


def test_local_launcher_runs_one_rank_only():
    with pytest.raises(E2WMError, match="stage train: the local launcher runs 1 rank"):
        run_stage("train", ["--config", "x.yaml"], launcher="local", workers=2)
