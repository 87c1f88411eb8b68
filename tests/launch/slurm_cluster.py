"""A real Slurm on this machine for tests: Debian's munged, slurmctld and slurmd, each started with a private
configuration, MUNGE key, state, spool, logs and ports under a temporary folder, so that nothing of the host's
own Slurm (if any) is read or touched. One node (this host) with 2 CPUs in one partition whose default CPU
binding is to cores, as many clusters have it: a step's task then sees only the CPUs the step asked for per
task, which is what `SRUN_CPUS_PER_TASK` is about. No accounting database: jobs are followed with scontrol.

Use the `slurm` fixture (import it into a test module); it skips, naming what is missing, unless this runs as
root with the Debian packages slurmctld, slurmd, slurm-client and munge installed. `running` runs the local
run a job is compared with at the same time as the job."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from e2wm.train import dist as edist

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")
PACKAGES = "slurmctld slurmd slurm-client munge"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}


def missing() -> str | None:
    """Why a real Slurm cannot run here, or None."""
    if os.geteuid() != 0:
        return "a private Slurm (munged, slurmctld, slurmd) needs root"
    absent = [p for p in PROGRAMS if shutil.which(p) is None]
    if absent:
        return f"needs Debian's Slurm and MUNGE ({', '.join(absent)} not found; apt-get install {PACKAGES})"
    return None


def _conf(d: Path, host: str, cpus: int) -> str:
    return "\n".join([
        "ClusterName=e2wmtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={edist.free_port()}", f"SlurmdPort={edist.free_port()}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={d / 'munge' / 'munge.socket'}",
        f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'slurmctld.log'}", f"SlurmdLogFile={d / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/affinity",   # no cgroups here: binding by affinity
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "SchedulerType=sched/builtin",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "MpiDefault=none", "ReturnToService=2",
        "MinJobAge=600", "KillWait=5", "InactiveLimit=0", "SlurmdTimeout=120",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN",
        f"PartitionName=e2wm Nodes={host} Default=YES MaxTime=INFINITE State=UP CpuBind=cores",
        ""])


class SlurmCluster:
    """munged + slurmctld + slurmd under `root`; `env` is what a Slurm command needs (SLURM_CONF)."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root, self.cpus = Path(root), cpus
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pids: list[int] = []

    def _run(self, *cmd, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, text=True, capture_output=True, check=False, **kw)

    def start(self, timeout: float = 60) -> SlurmCluster:
        m = self.root / "munge"
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, mode=0o700)
        os.chmod(self.root, 0o755)   # munged wants every folder above its socket searchable
        subprocess.run(["mungekey", "--create", "--keyfile", str(m / "munge.key")], check=True)
        subprocess.run(["munged", "--force", f"--socket={m / 'munge.socket'}", f"--key-file={m / 'munge.key'}",
                        f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                        f"--seed-file={m / 'munged.seed'}"], check=True)
        self.pids.append(int((m / "munged.pid").read_text()))
        self.conf.write_text(_conf(self.root, self.host, self.cpus))
        for daemon, pid_file in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            p = self._run(daemon, "-f", str(self.conf), *(["-i"] if daemon == "slurmctld" else []))
            assert p.returncode == 0, f"{daemon} did not start: {p.stderr}\n{self.logs()}"
            self.pids.append(self._pid(pid_file, timeout))
        self._wait(lambda: self._run("sinfo", "-h", "-n", self.host, "-o", "%T").stdout.strip() == "idle",
                   timeout, f"node {self.host} to be idle")
        return self

    def _pid(self, name: str, timeout: float) -> int:
        path = self.root / name
        self._wait(lambda: path.exists() and path.read_text().strip(), timeout, str(path))
        return int(path.read_text())

    def _wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            assert time.monotonic() < deadline, f"waited {timeout} s for {what}\n{self.logs()}"
            time.sleep(0.5)
        return value

    def logs(self, tail: int = 3000) -> str:
        return "".join(f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}"
                       for f in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """Cancel what is left of our jobs, then end our daemons by their pids: slurmd and slurmctld, then munged."""
        if self.pids[1:]:
            self._run("scancel", "--full", "--user=root")
        _end(self.pids[1:])
        _end(self.pids[:1])
        self.pids.clear()

    def sbatch(self, script: Path, args=(), options=(), env=None, cwd=None) -> str:
        """Submit `script ARGS` with sbatch OPTIONS (these win over its #SBATCH lines); the job id."""
        p = subprocess.run(["sbatch", "--parsable", *options, str(script), *args], text=True, capture_output=True,
                           check=False, cwd=cwd, env={**self.env, **(env or {})})
        assert p.returncode == 0, f"sbatch refused the job: {p.stderr}"
        return p.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        """scontrol's record of a job: {field: value}."""
        out = self._run("scontrol", "show", "job", "--oneliner", job_id).stdout
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait(self, job_id: str, timeout: float) -> dict:
        """The job's record once it has ended; on a timeout the job is cancelled and the test fails."""
        try:
            return self._wait(lambda: (j := self.job(job_id)).get("JobState") in ENDED and j, timeout,
                              f"job {job_id} to end")
        except AssertionError:
            self._run("scancel", "--full", job_id)
            raise


def _end(pids: list[int], grace: float = 15) -> None:
    """SIGTERM to each of `pids`, SIGKILL to those still there after `grace` s."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(cmd: list[str], log: Path, cwd: Path):
    """`cmd` in the CPU environment (`cwd` on PYTHONPATH), in the background while the body runs, its output
    into `log`; killed with its process group if it is still running when the body ends."""
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, env=edist.cpu_env({"PYTHONPATH": str(cwd)}), cwd=cwd, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def finished(p: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait for `running`'s process; fail with its output unless it ends well within `timeout` s."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = f"still running after {timeout} s"
    assert rc == 0, f"{' '.join(map(str, p.args))}: {rc}\n{log.read_text(errors='replace')[-6000:]}"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running private Slurm of this host (module-wide); skipped where it cannot run."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
