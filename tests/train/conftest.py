"""Training fixtures: a 2-rank ZeRO-3 Fisher of the tiny model (tests/conftest.py saves it), launch helpers."""
import pytest
from run_helpers import check, launch
from train_helpers import PROBE, ROOT, TARGETS, ZERO3_JOBS, with_

from e2wm.train import dist as edist


@pytest.fixture(scope="session")
def fisher_z3(tmp_path_factory, tiny_model_dir):
    """A Fisher of every weight of the tiny model, computed on 2 ranks at ZeRO-3 (torchrun): the ewc jobs
    train every weight, the ewc_lora runs read their q/v/lm_head subset."""
    out = tmp_path_factory.mktemp("fisher-z3")
    check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.train.fisher_run", [
        "--model", str(tiny_model_dir), "--corpus", "builtin:pydoc", "--max-samples", "12", "--max-length", "64",
        "--micro-batch", "2", "--zero-stage", "3", "--lora-targets", ",".join(TARGETS), "--modules", "all",
        "--out", str(out)])))
    return out


@pytest.fixture(scope="session")
def base_config(tiny_model_dir, built_dataset, fisher_z3) -> dict:
    """EWC-LoRA on the build-data dataset: 86 rows, 11 steps an epoch, 3 epochs, fp32, no dropout."""
    return {"seed": 3, "model": {"name_or_path": str(tiny_model_dir)},
            "lora": {"r": 8, "alpha": 32, "dropout": 0.0, "target_modules": TARGETS},
            "data": {"path": str(built_dataset), "max_length": 256},
            "optim": {"lr": 1e-2, "epochs": 3, "global_batch_size": 8, "micro_batch_size": 2, "precision": "fp32"},
            "regularizer": {"kind": "ewc_lora", "lam": 1000.0, "fisher": str(fisher_z3), "fisher_scale": "raw"},
            "deepspeed": {"config": "zero2"},
            "checkpoint": {"every": 4, "keep_last": 2},
            "logging": {"every": 9, "tensorboard": True}}


@pytest.fixture(scope="session")
def zero3_jobs(tmp_path_factory, base_config):
    """{name: run dir} of the ZERO3_JOBS, trained and exported by tests/train/recipe_worker.py."""
    import json

    root = tmp_path_factory.mktemp("zero3-jobs")
    jobs = []
    for name, (stage, changes) in ZERO3_JOBS.items():
        cfg = with_(base_config, out=str(root / name), deepspeed={"config": f"zero{stage}"},
                    optim={"max_steps": 4}, checkpoint={"every": 0, "resume": "never"},
                    logging={"tensorboard": False})
        jobs.append({"name": name, "config": with_(cfg, **changes), **({"probe": PROBE} if name == "ewc_lora" else {})})
    spec = root / "spec.json"
    spec.write_text(json.dumps({"jobs": jobs}))
    worker = ROOT / "tests" / "train" / "recipe_worker.py"
    check(launch(edist.torchrun_cmd(2, edist.free_port(), str(worker), [str(spec)])))
    return {name: root / name for name in ZERO3_JOBS}
