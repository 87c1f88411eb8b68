"""A Ray cluster of two nodes (network namespaces joined by a veth pair): the head (no CPUs for work) and a worker
node that every task and Ray Train worker lands on. `e2wm collect` and `--launcher ray` training run on it while
the worker node is killed (every process of it at once) and a new one joins: collection loses nothing (its
shards equal an uninterrupted run's) and training resumes from its last checkpoint and ends where an
uninterrupted run ends. The driver, tests/multinode/ray_driver.py, runs on the head node."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nodes import BIN, Node, enter, init_pid, kill_node, unavailable, veth_pair
from run_helpers import wait_for
from safetensors.torch import load_file

from e2wm.train import dist as edist

pytestmark = pytest.mark.multinode

HERE = Path(__file__).resolve().parent
PORT = 6379   # the namespaces are private: fixed ports collide with nothing
START_TIMEOUT_S, RUN_TIMEOUT_S = 120, 600
MAX_FAILURES = int(os.environ.get("E2WM_TEST_MAX_FAILURES", "2"))   # 0: checks that the test can fail


def _env(ext: Path) -> dict:
    """Every ray process's environment: no RAY_* from outside, auth off, no usage stats; the GCS declares a
    silent node dead after about 3 s (default 15 s); a raylet waits up to 2 minutes for its agents. One JIT
    cache `ext` for all nodes (the host's, shared like a home folder): a fresh node would spend a minute
    building DeepSpeed's shm op."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(TORCH_EXTENSIONS_DIR=str(ext), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               OMP_NUM_THREADS="1",
               RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
               RAY_health_check_failure_threshold="3",
               RAY_agent_register_timeout_ms="120000",   # a loaded CI box starts a node's agents slowly
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return env


def _train_config(model: Path, data: Path, fisher: Path) -> dict:
    """EWC-LoRA at ZeRO-2, 4 steps, checkpoints every 2; `never` resume, which a restart must overrule."""
    return {"seed": 3, "model": {"name_or_path": str(model)}, "lora": {"r": 8, "alpha": 32, "dropout": 0.0},
            "data": {"path": str(data), "max_length": 128},
            "optim": {"lr": 1e-2, "max_steps": 4, "global_batch_size": 4, "micro_batch_size": 2,
                      "precision": "fp32"},
            "regularizer": {"kind": "ewc_lora", "lam": 1000.0, "fisher": str(fisher)},
            "deepspeed": {"config": "zero2"}, "checkpoint": {"every": 2, "resume": "never"},
            "logging": {"every": 1, "tensorboard": False}}


def _ray_start(node: Node, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return node.popen([str(BIN / "ray"), "start", "--block", "--node-ip-address", node.address,
                       "--object-store-memory", str(100 << 20), "--disable-usage-stats", *args], env, log)


def _started(proc: subprocess.Popen, log: Path) -> None:
    """Wait for `ray start` to say the node is up (a worker node started before its head gives up)."""
    def up() -> bool:
        assert proc.poll() is None, f"`ray start` exited {proc.returncode}:\n{log.read_text()[-4000:]}"
        return "Ray runtime started" in log.read_text()
    wait_for(up, START_TIMEOUT_S, f"`ray start` ({log.name})", interval=0.5)


def _shards(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {name: (out / name).read_bytes() for name in m["shards"]} | {"hash": m["content_hash"].encode()}


def test_collection_and_training_survive_losing_the_worker_node(tmp_path, tiny_model_dir, built_dataset):
    reason = unavailable() or (None if (BIN / "ray").exists() else f"no `ray` executable next to {sys.executable}")
    if reason:
        pytest.skip(reason)
    from e2wm.train.fisher_run import entry as fisher
    shared = tmp_path / "shared"
    shared.mkdir()
    assert fisher(["--model", str(tiny_model_dir), "--corpus", "builtin:pydoc", "--max-samples", "4",
                   "--max-length", "32", "--zero-stage", "0", "--out", str(shared / "fisher")]) == 0
    config = shared / "train.json"
    config.write_text(json.dumps(_train_config(tiny_model_dir, built_dataset, shared / "fisher")))
    ext = Path(edist.cpu_env()["TORCH_EXTENSIONS_DIR"])
    ext.mkdir(parents=True, exist_ok=True)
    env, logs = _env(ext), tmp_path
    t0 = time.monotonic()
    with veth_pair() as pair:
        folders = [shared, tiny_model_dir, built_dataset, ext]
        head = Node(*pair[0], tmp_path / "head-tmp", folders)
        worker = [Node(*pair[1], tmp_path / f"worker{k}-tmp", folders) for k in range(3)]   # one per life
        procs, driver = {}, None

        def up(k: int) -> None:   # worker node number k (re)joins the cluster: 2 CPUs for the tasks
            procs["worker"] = _ray_start(worker[k], ["--address", f"{head.address}:{PORT}", "--num-cpus", "2"],
                                         env, logs / f"worker{k}.log")

        def paused(name: str) -> float:
            wait_for(lambda: (shared / f"paused-{name}").exists() or driver.poll() is not None, RUN_TIMEOUT_S,
                     f"the {name} pause")
            log = (logs / "driver.log").read_text()
            assert driver.poll() is None, f"driver exited {driver.returncode}:\n{log[-6000:]}"
            return time.monotonic()

        try:
            procs["head"] = _ray_start(head, ["--head", "--port", str(PORT), "--num-cpus", "0",
                                              "--include-dashboard", "false"], env, logs / "head.log")
            _started(procs["head"], logs / "head.log")
            up(0)
            print(f"head up at {time.monotonic() - t0:.0f} s")
            pid = init_pid(procs["head"])
            with open(logs / "driver.log", "wb") as f:
                driver = subprocess.Popen(enter(pid, [sys.executable, str(HERE / "ray_driver.py"),
                                                      f"{head.address}:{PORT}", str(shared), str(config),
                                                      str(MAX_FAILURES)]),
                                          env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            paused("collect")
            print(f"collection paused at {time.monotonic() - t0:.0f} s")
            kill_node(procs["worker"])   # mid-collection: its actors and their in-flight units go with it
            up(1)
            paused("train")
            before = (shared / "train-kill" / "checkpoints" / "step-00000002" / "trainer_state.json").stat()
            print(f"training paused at {time.monotonic() - t0:.0f} s")
            kill_node(procs["worker"])   # at step 3, after the step-2 checkpoint
            up(2)
            try:
                rc = driver.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                rc = None
            out = (logs / "driver.log").read_text()
            assert rc == 0, f"driver exited {rc}:\n{out[-8000:]}"
        finally:
            if driver is not None and driver.poll() is None:
                os.killpg(driver.pid, 9)
                driver.wait()
            for p in procs.values():
                kill_node(p)
    print(f"cluster run: {time.monotonic() - t0:.0f} s")

    # collection: every unit of the killed run came back; its shards are the uninterrupted run's, byte for byte
    assert _shards(shared / "collect-kill") == _shards(shared / "collect-base")
    stats = json.loads((shared / "collect-kill" / "stats.json").read_text())
    assert stats["units"] == 10 and stats["episodes"] + stats["failures"] == 10

    # training: the restart resumed from the step-2 checkpoint (left as it was) and ended with the same adapter
    run, base = shared / "train-kill", shared / "train-base"
    after = (run / "checkpoints" / "step-00000002" / "trainer_state.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "resumed from" in out and "step-00000002" in out
    a, b = (load_file(r / "adapter" / "adapter_model.safetensors") for r in (run, base))
    assert sorted(a) == sorted(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    base_steps = [json.loads(line) for line in (base / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in steps] == [(r["step"], r["loss"]) for r in base_steps]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
