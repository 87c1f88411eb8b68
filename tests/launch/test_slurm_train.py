"""launch/slurm_train.sbatch on a real Slurm (tests/launch/slurm_cluster.py): `sbatch` of the script as it is
(its #SBATCH lines, with the sizes overridden on the command line: 1 node, 2 CPUs, no GPU) trains the tiny model
on 2 gloo ranks to exactly the losses and adapter of the same `torchrun` run without Slurm (run alongside), and
its torchrun
sees the job's 2 CPUs per task (SRUN_CPUS_PER_TASK; without it the partition's core binding gives it 1)."""
import sys

import pytest
import yaml
from run_helpers import ROOT
from safetensors.torch import load_file
from slurm_cluster import finished, running, slurm  # noqa: F401  (slurm: the fixture)

from e2wm.train import dist as edist

pytestmark = pytest.mark.multinode

SCRIPT = ROOT / "launch" / "slurm_train.sbatch"


def _config(path, out, model, data):
    path.write_text(yaml.safe_dump({
        "out": str(out), "model": {"name_or_path": str(model)}, "data": {"path": str(data), "max_length": 128},
        "regularizer": {"kind": "none"}, "lora": {"dropout": 0.0}, "checkpoint": {"every": 0},
        "logging": {"every": 1, "tensorboard": False},
        "optim": {"precision": "fp32", "max_steps": 3, "global_batch_size": 4, "micro_batch_size": 2}}))
    return path


def _losses(run):
    import json
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _adapter(run):
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def test_sbatch_slurm_train_gives_the_local_run(slurm, tmp_path, tiny_model_dir, built_dataset):  # noqa: F811
    cfg = _config(tmp_path / "slurm.yaml", tmp_path / "slurm", tiny_model_dir, built_dataset)
    local = _config(tmp_path / "local.yaml", tmp_path / "local", tiny_model_dir, built_dataset)
    log, local_log = tmp_path / "job.log", tmp_path / "local.log"
    env = edist.cpu_env({"PYTHONPATH": str(ROOT), "CONFIG": str(cfg), "GPUS_PER_NODE": "2", "VENV": sys.prefix,
                         "RDZV_PORT": str(edist.free_port())})
    # the same run without Slurm (torchrun, 2 ranks) at the same time
    cmd = edist.torchrun_cmd(2, edist.free_port(), "e2wm.train", ["--config", str(local), "--set", "seed=5"])
    with running(cmd, local_log, ROOT) as local_run:
        job = slurm.sbatch(SCRIPT, ["--set", "seed=5"], env=env, cwd=ROOT, options=[
            "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10", f"--output={log}"])
        record = slurm.wait(job, 300)
        finished(local_run, local_log, 300)
    text = log.read_text() if log.exists() else "(no job log)"
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:] + slurm.logs()
    assert f"slurm_train.sbatch: {slurm.host}: 2 rank(s) on 2 CPU(s)" in text, text[-4000:]
    assert [s for s, _ in _losses(tmp_path / "slurm")] == [1, 2, 3]
    assert _losses(tmp_path / "slurm") == _losses(tmp_path / "local")
    got, want = _adapter(tmp_path / "slurm"), _adapter(tmp_path / "local")
    assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in want)
