"""launch/ recipes for training: the Slurm script trains for real through stand-in Slurm commands (torchrun
with a c10d rendezvous, 2 CPU ranks); the multi-node DeepSpeed script hands the right command to `deepspeed`."""
import os
import subprocess
import sys

import pytest
import yaml
from run_helpers import check, launch
from train_helpers import ROOT, metrics

from e2wm.train import dist as edist

pytestmark = pytest.mark.slow


def _stand_ins(bin_dir, **scripts):
    bin_dir.mkdir(parents=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def _config(tmp_path, tiny_model_dir, built_dataset):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"out": str(tmp_path / "run"), "model": {"name_or_path": str(tiny_model_dir)},
                                   "data": {"path": str(built_dataset), "max_length": 128},
                                   "regularizer": {"kind": "none"},
                                   "optim": {"precision": "fp32", "max_steps": 3, "global_batch_size": 4,
                                             "micro_batch_size": 2}}))
    return cfg


def test_slurm_train_script_trains(tmp_path, tiny_model_dir, built_dataset):
    path = _stand_ins(tmp_path / "bin",
                      srun='while [[ $1 == --* ]]; do shift; done; exec "$@"',   # one node: run the step here
                      scontrol='echo localhost', **{"nvidia-smi": 'printf "GPU 0\\nGPU 1\\n"'})
    p = check(launch(["bash", str(ROOT / "launch" / "slurm_train.sbatch"), "--set", "logging.every=1"],
                     PATH=path, SLURM_JOB_NODELIST="localhost", SLURM_JOB_ID="7", SLURM_JOB_NUM_NODES="1",
                     SLURM_SUBMIT_DIR=str(ROOT), VENV=sys.prefix, RDZV_PORT=str(edist.free_port()),
                     CONFIG=str(_config(tmp_path, tiny_model_dir, built_dataset))))
    assert "2 rank(s) × 1 micro-batch(es)" in p.stdout and "step 3/3" in p.stdout
    assert [r["step"] for r in metrics(tmp_path / "run")] == [1, 2, 3]


def test_deepspeed_multinode_script_passes_hostfile_config_and_overrides(tmp_path):
    venv = tmp_path / "venv"   # a stand-in venv whose `deepspeed` prints the env file and the command it was given
    _stand_ins(venv / "bin", deepspeed='echo "DS_ENV_FILE=$DS_ENV_FILE"; printf "%s\\n" "$@"',
               activate=f'PATH="{venv / "bin"}:$PATH"')
    (venv / "bin" / "python").symlink_to(sys.executable)
    ds_env = tmp_path / "launch" / "deepspeed_env"
    script = ["bash", str(ROOT / "launch" / "deepspeed_multinode.sh")]
    p = check(launch([*script, str(ROOT / "launch" / "hostfile.example"), "my.yaml", "--set", "deepspeed.config=zero3"],
                     VENV=str(venv), MASTER_ADDR="10.0.0.1", E2WM_DS_ENV_OUT=str(ds_env), NCCL_IB_HCA="mlx5_0"))
    first, *args = p.stdout.split()
    assert first == f"DS_ENV_FILE={ds_env}"   # absolute: DeepSpeed joins it to ~ and to the working directory
    assert args[:2] == ["--hostfile", str(ROOT / "launch" / "hostfile.example")]
    assert args[2:6] == ["--master_addr", "10.0.0.1", "--master_port", "29500"]
    assert args[6:] == ["--module", "e2wm.train", "--config", "my.yaml", "--set", "deepspeed.config=zero3"]
    written = ds_env.read_text().splitlines()
    assert f"PATH={venv / 'bin'}:$PATH" in written and "NCCL_IB_HCA=mlx5_0" in written
    assert any(line.startswith("TORCH_EXTENSIONS_DIR=") and line.endswith("$(hostname)") for line in written)

    hostfile = tmp_path / "hostfile"   # no MASTER_ADDR: the address on the route to the second host
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    env = {k: v for k, v in os.environ.items() if k != "MASTER_ADDR"}
    p = subprocess.run([*script, str(hostfile), "fisher", "--model", "m", "--out", "o"], capture_output=True,
                       text=True, env={**env, "VENV": str(venv), "E2WM_DS_ENV_OUT": str(ds_env)}, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[3:5] == ["--master_addr", "127.0.0.1"]
    assert p.stdout.split()[7:9] == ["--module", "e2wm.train.fisher_run"]
    hostfile.write_text("localhost\n")   # a bad hostfile: one line, before anything starts
    p = subprocess.run([*script, str(hostfile), "x.yaml"], capture_output=True, text=True,
                       env={**env, "VENV": str(venv), "E2WM_DS_ENV_OUT": str(ds_env)}, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.strip().startswith("e2wm: error: hostfile") and not p.stdout
