"""`checkpoint.snapshots`: a training run also exports its adapter at the given steps (RUN/snapshots/step-K), each a
loadable adapter of that step; a resumed run keeps the snapshots it finds and takes one it was stopped before
exporting from its checkpoint. One process, the tiny model, 4 steps."""
import shutil

import pytest
import torch
from run_helpers import tiny_train_config
from safetensors.torch import load_file

from e2wm.config import build
from e2wm.errors import E2WMError
from e2wm.train import recipe
from e2wm.train.__main__ import run
from e2wm.train.config import TrainConfig
from e2wm.train.recipe import snapshot_dir

SNAPS = [1, 2, 9]   # 9: past the last step, so the final export is that point


def _config(out, tiny_model_dir, built_dataset) -> TrainConfig:
    return build(TrainConfig, tiny_train_config(
        out, tiny_model_dir, built_dataset, lora={"r": 4, "alpha": 8, "dropout": 0.0},
        optim={"max_steps": 4, "lr": 1e-2}, checkpoint={"every": 0, "keep_last": 2, "snapshots": SNAPS}))


def _weights(folder) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, tiny_model_dir, built_dataset):
    out = tmp_path_factory.mktemp("snapshots") / "run"
    run(_config(out, tiny_model_dir, built_dataset))
    return out


def test_snapshots_are_the_adapters_of_their_steps(whole_run, tiny_model_dir):
    from e2wm.train.adapters import check_adapter, load_onto, read_config
    from e2wm.train.model import load_model
    assert sorted(p.name for p in (whole_run / "snapshots").iterdir()) == ["step-1", "step-2"]
    final = _weights(whole_run / "adapter")
    snaps = {k: _weights(snapshot_dir(whole_run, k)) for k in (1, 2)}
    assert not _same(snaps[1], snaps[2])
    assert not _same(snaps[2], final) and not _same(snaps[1], final)
    for k in (1, 2):   # each loads onto the base model as PEFT adapter, like the final one
        folder, cfg = read_config(snapshot_dir(whole_run, k))
        model = load_onto(load_model(str(tiny_model_dir)), folder, check_adapter(folder, cfg), str(folder))
        loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
        assert loaded and any(p.abs().max() > 0 for n, p in loaded.items() if "lora_B" in n)


def test_a_resumed_run_keeps_its_snapshots_and_takes_a_missed_one(whole_run, tmp_path, tiny_model_dir,
                                                                  built_dataset, monkeypatch):
    cfg = _config(tmp_path / "run", tiny_model_dir, built_dataset)

    def stop(done):
        if done == 3:
            raise RuntimeError("killed at step 3")
    monkeypatch.setattr(recipe, "STEP_HOOKS", [stop])
    with pytest.raises(RuntimeError, match="killed at step 3"):
        run(cfg)
    out = tmp_path / "run"
    first = snapshot_dir(out, 1)
    stamp = first.stat().st_mtime_ns, (first / "adapter_model.safetensors").stat().st_mtime_ns
    # stopped between step 2's checkpoint and its export: the snapshot is not there, the checkpoint is
    shutil.rmtree(snapshot_dir(out, 2))
    monkeypatch.setattr(recipe, "STEP_HOOKS", [])
    run(cfg)
    assert (first.stat().st_mtime_ns, (first / "adapter_model.safetensors").stat().st_mtime_ns) == stamp   # kept
    for k in (1, 2):   # and the same adapters as the run that was never stopped
        assert _same(_weights(snapshot_dir(out, k)), _weights(snapshot_dir(whole_run, k))), k
    assert _same(_weights(out / "adapter"), _weights(whole_run / "adapter"))


@pytest.mark.parametrize("steps, names", [([0], "checkpoint.snapshots[0]=0"), ([2, 2], "given twice"),
                                          ([True], "checkpoint.snapshots[0]: expected an int")])
def test_bad_snapshot_steps_are_refused(steps, names):
    import re
    with pytest.raises(E2WMError, match=re.escape(names)):
        build(TrainConfig, {"checkpoint": {"snapshots": steps}}, "train.yaml")


def test_snapshots_leave_the_trajectory_hash_alone():
    plain, snapped = (build(TrainConfig, {"regularizer": {"kind": "none"}, "checkpoint": c})
                      for c in ({}, {"snapshots": [5]}))
    assert plain.trajectory_hash() == snapped.trajectory_hash()
