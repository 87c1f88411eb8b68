"""launch/slurm_ray_cluster.sbatch on a real Slurm (tests/launch/slurm_cluster.py), in pipeline mode: `sbatch`
of the script as it is (1 node, 2 CPUs) brings up a Ray node in a job step and runs a reduced quickstart
pipeline on it (collection on Ray actors, the Fisher on 2 Ray Train workers). It ends with exactly the
episodes, base model and Fisher of the same pipeline run alongside without Slurm on a private Ray; its Ray
node sees the job's 2 CPUs per task (SRUN_CPUS_PER_TASK; without it the partition's core binding gives it 1),
and the job leaves no Ray process behind."""
import json
import sys

import pytest
from run_helpers import ROOT
from safetensors.torch import load_file
from slurm_cluster import finished, running, slurm  # noqa: F401  (slurm: the fixture)

from e2wm.train import dist as edist

pytestmark = pytest.mark.multinode

SCRIPT = ROOT / "launch" / "slurm_ray_cluster.sbatch"
ARGS = ["--stages", "collect,data,model,fisher", *(f"--set={s}" for s in (
    "collect.plans=24", "collect.explorations=12", "collect.stories=12", "collect.scenes=4",
    "collect.mcts.simulations=200", "model.pretrain_steps=4", "fisher.max_samples=8", "fisher.max_length=64",
    "fisher.micro_batch=2", "fisher.checkpoint_every=4"))]


def _results(out) -> dict:
    """What the two runs must share: the episodes' hash, each stage's record (less its time), the base model's
    bytes and the Fisher's tensors."""
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    return {"episodes": json.loads((out / "collect" / "manifest.json").read_text())["content_hash"],
            "stages": {k: {f: v for f, v in s.items() if f != "seconds"} for k, s in stages.items()},
            "model": (out / "model" / "model.safetensors").read_bytes(),
            "fisher": load_file(str(out / "fisher" / "fisher.safetensors"))}


def _ray_processes(port: int) -> list[str]:
    """Command lines of the Ray daemons (GCS server, raylets, their helpers) of the cluster at GCS `port`."""
    import psutil
    marks = (f"--gcs_server_port={port}", f":{port}")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "ray" in cmd and any(m in cmd for m in marks) and "pytest" not in cmd:
            found.append(cmd[:200])
    return found


def test_sbatch_ray_cluster_runs_the_pipeline_of_a_local_run(slurm, tmp_path):  # noqa: F811
    port, log, local, local_log = edist.free_port(), tmp_path / "job.log", tmp_path / "local", tmp_path / "local.log"
    head_args = f"--ray-client-server-port={edist.free_port()} --dashboard-agent-listen-port={edist.free_port()}"
    env = edist.cpu_env({"PYTHONPATH": str(ROOT), "VENV": sys.prefix, "PRESET": "quickstart",
                         "OUT": str(tmp_path / "slurm"), "RAY_PORT": str(port),
                         "RAY_DASHBOARD_PORT": str(edist.free_port()), "RAY_HEAD_ARGS": head_args})
    # the same pipeline without Slurm (a private Ray on this machine) at the same time
    cmd = [sys.executable, "-m", "e2wm.cli", "pipeline", "--preset", "quickstart", "--launcher", "ray",
           "--address", "local", "--workers", "2", "--out", str(local), *ARGS]
    with running(cmd, local_log, ROOT) as local_run:
        job = slurm.sbatch(SCRIPT, ARGS, env=env, cwd=ROOT, options=[
            "--nodes=1", "--cpus-per-task=2", "--time=20", f"--output={log}"])
        record = slurm.wait(job, 900)
        finished(local_run, local_log, 900)
    text = log.read_text() if log.exists() else "(no job log)"
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text[-6000:] + slurm.logs()
    assert f"slurm_ray_cluster.sbatch: {slurm.host}: Ray node with 2 CPU(s) on 2 CPU(s)" in text, text[-6000:]
    assert "[pipeline] 4/7 fisher: done" in text
    left = _ray_processes(port)
    assert not left, f"Ray processes of the job outlived it: {left}"

    got, want = _results(tmp_path / "slurm"), _results(local)
    assert got["episodes"] == want["episodes"] and got["stages"] == want["stages"]
    assert got["model"] == want["model"]
    assert got["fisher"].keys() == want["fisher"].keys()
    assert all(got["fisher"][k].equal(want["fisher"][k]) for k in want["fisher"])
