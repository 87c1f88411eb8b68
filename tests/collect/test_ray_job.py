"""`e2wm collect` as a Ray job: a private Ray cluster on loopback, `ray job submit` of this checkout.

The cluster is started with `ray start --head --block` on free ports and its own temp dir, with
RAY_AUTH_MODE=disabled in every ray process and CLI call, so it cannot collide with another Ray
instance on the machine (a developer's cluster, another test's `ray.init(address="local")`).
Teardown stops exactly this cluster's processes: `ray stop` would stop every Ray process on the
machine, not just ours.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from run_helpers import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 180
# Kept out of the upload (the venv alone is gigabytes).
EXCLUDES = [".venv/", ".git/", "out/", "build/", "dist/", "*.egg-info/", "__pycache__/",
            ".pytest_cache/", ".hypothesis/"]
PORT_FLAGS = ["--port", "--dashboard-port", "--ray-client-server-port",
              "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port",
              "--object-manager-port"]
SPEC = ["--plans", "4", "--explorations", "4", "--stories", "2", "--scenes", "2", "--simulations", "200",
        "--workers", "2", "--shard-size", "4"]


def _ray_cli() -> list[str] | None:
    """The ray CLI of the Python running the tests (the cluster and the job must share its version)."""
    exe = BIN / "ray"
    if exe.exists():
        return [str(exe)]
    if importlib.util.find_spec("ray") is not None:
        return [sys.executable, "-m", "ray.scripts.scripts"]
    return None


RAY = _ray_cli()


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on loopback now (all held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_env() -> dict[str, str]:
    """The environment of every ray process and CLI call here: no RAY_* from outside (an address
    or token of another cluster), auth off, no usage stats, and this Python's bin dir first on PATH
    so `python` in a job's entrypoint is this interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PATH=str(BIN) + os.pathsep + env.get("PATH", ""))
    return env


def _ours(root: int, temp_dir: str) -> list:
    """The cluster's processes: descendants of `ray start --block`, plus any process that names
    our private temp dir or runs in it (a job's entrypoint, a worker whose parent already died)."""
    import psutil
    procs = {}
    try:
        for p in psutil.Process(root).children(recursive=True):
            procs[p.pid] = p
    except psutil.NoSuchProcess:
        pass
    inside = temp_dir + os.sep

    def names_it(arg: str) -> bool:
        return arg == temp_dir or arg.endswith("=" + temp_dir) or inside in arg

    for p in psutil.process_iter(["cmdline", "cwd"]):
        if p.pid == os.getpid():
            continue
        if any(names_it(a) for a in p.info["cmdline"] or []) or names_it(p.info["cwd"] or ""):
            procs[p.pid] = p
    return list(procs.values())


def _stop_cluster(head: subprocess.Popen, temp_dir: str) -> None:
    """Stop this cluster only, in `ray stop`'s order: raylet, the rest, then the GCS; SIGTERM, then
    SIGKILL after a short grace. Without psutil: the process group of `ray start --block`."""
    try:
        import psutil
    except ImportError:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, sig)
            except OSError:
                break
            try:
                head.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        return
    procs = _ours(head.pid, temp_dir)

    def name(p):
        try:
            return p.name()
        except psutil.Error:
            return ""

    raylet = [p for p in procs if name(p) == "raylet"]
    gcs = [p for p in procs if name(p) == "gcs_server"]
    rest = [p for p in procs if p not in raylet and p not in gcs]
    for group in (raylet, rest, gcs):
        for p in group:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(group, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
    if head.poll() is None:
        head.kill()
    head.wait(timeout=10)
    for p in _ours(head.pid, temp_dir):   # anything started meanwhile
        try:
            p.kill()
        except psutil.Error:
            pass


def _wait_for_jobs_api(url: str, head: subprocess.Popen, log: Path) -> None:
    def up() -> bool:
        if head.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {head.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/api/jobs/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    try:
        wait_for(up, START_TIMEOUT_S, f"the Ray Jobs API at {url}", interval=0.5)
    except AssertionError as e:
        pytest.fail(f"{e}:\n{log.read_text()[-4000:]}")


@pytest.fixture
def ray_cluster():
    """A one-node Ray cluster (2 CPUs) on loopback; yields its dashboard (Jobs API) URL and env."""
    if RAY is None:
        pytest.skip(f"the `ray` executable is missing (not next to {sys.executable}, ray not importable)")
    # Short: Ray's Unix sockets live under it (~107 characters at most), pytest's tmp_path is long.
    temp_dir = tempfile.mkdtemp(prefix="r", dir="/tmp" if os.path.isdir("/tmp") else None)
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    cmd = [*RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--num-cpus", "2", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
           "--min-worker-port", "0", "--max-worker-port", "0",   # workers: ports the OS picks
           "--temp-dir", temp_dir, "--disable-usage-stats"]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    env = _ray_env()
    log = Path(temp_dir) / "ray-start.log"
    with open(log, "wb") as f:
        head = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{ports['--dashboard-port']}"
        _wait_for_jobs_api(url, head, log)
        yield url, env
    finally:
        _stop_cluster(head, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _run(cmd: list[str], env: dict, timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"timed out after {timeout} s: {shlex.join(cmd)}\n{out[-6000:]}")


def _check_job(r: subprocess.CompletedProcess, sid: str) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"job {sid} exited {r.returncode}:\n{out[-6000:]}"
    assert f"Job '{sid}' succeeded" in out, out[-6000:]
    return out


def test_collect_as_a_ray_job_and_resume(ray_cluster, tmp_path):
    url, env = ray_cluster
    out = (tmp_path / "collect").resolve()   # absolute: the job runs in an uploaded copy of the repo

    # 1. `ray job submit` with this checkout as the working dir; the driver joins the cluster.
    sid = f"e2wm-test-{os.getpid()}-1"
    runtime_env = {"excludes": EXCLUDES, "env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}}

    def submit(submission_id: str) -> list[str]:
        return [*RAY, "job", "submit", "--address", url, "--submission-id", submission_id,
                "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
                sys.executable, "-m", "e2wm.cli", "collect", "--address", "auto",
                "--out", str(out), *SPEC]

    _check_job(_run(submit(sid), env), sid)

    m = json.loads((out / "manifest.json").read_text())
    assert m["units"] == 10
    assert m["episodes"] + m["failures"] == 10, m
    assert m["episodes"] >= 1, m
    keys = []
    for name, shard in sorted(m["shards"].items()):
        data = (out / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"], name
        for line in data.decode().splitlines():
            keys.append(json.loads(line)["key"])
    assert sorted(out.glob("shard-*.jsonl")) == [out / k for k in sorted(m["shards"])]
    assert len(keys) == m["episodes"] and len(set(keys)) == len(keys)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == m["failures"]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
              for p in out.glob("shard-*.jsonl")}

    # 2. The same job again, through launch/ray_job_submit.sh (so launch/runtime_env.yaml): a
    # resume with nothing left to do leaves the finished shards untouched.
    sid2 = f"e2wm-test-{os.getpid()}-2"
    bash = shutil.which("bash")
    python = BIN / "python"   # the script's entrypoint runs `python`, found on the cluster's PATH
    if (bash and (BIN / "ray").exists() and python.exists()
            and os.path.realpath(python) == os.path.realpath(sys.executable)):
        script_env = dict(env, RAY_ADDRESS=url, OUT=str(out), SUBMISSION_ID=sid2, RAY=str(BIN / "ray"))
        r = _run([bash, str(REPO / "launch" / "ray_job_submit.sh"), *SPEC], script_env)
    else:
        r = _run(submit(sid2), env)
    _check_job(r, sid2)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
             for p in out.glob("shard-*.jsonl")}
    assert after == before
    m2 = json.loads((out / "manifest.json").read_text())
    assert (m2["episodes"], m2["failures"], m2["content_hash"]) == (m["episodes"], m["failures"],
                                                                    m["content_hash"])
