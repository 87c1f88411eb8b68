"""A stale JIT-build lock (a build killed mid-way) is one clear line within seconds, not a silent hang;
a lock a live build holds is waited on; and a 2-rank CPU launch, which loads DeepSpeed's shm op,
reports a planted stale lock instead of waiting on it forever."""
import json
import os
import subprocess
import sys
import threading

import pytest
import yaml
from run_helpers import tiny_train_config, write_rows
from train_helpers import ROOT

from e2wm.errors import E2WMError
from e2wm.train import dist as edist
from e2wm.train.extensions import SHM_OP, check_locks, stale_lock


def _plant(root, name=SHM_OP, age_s=3600.0):
    (root / name).mkdir(parents=True, exist_ok=True)
    lock = root / name / "lock"
    lock.write_text("")
    past = os.stat(lock).st_mtime - age_s
    os.utime(lock, (past, past))
    os.utime(root / name, (past, past))
    return lock


def _bounded(fn, limit_s=60):
    """fn() in a thread; fails the test (instead of hanging it) when it does not return in time."""
    box = {}

    def go():
        try:
            box["value"] = fn()
        except BaseException as e:   # noqa: BLE001 - handed back to the test
            box["error"] = e
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"still waiting after {limit_s} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_no_lock_passes(tmp_path):
    _bounded(lambda: check_locks([SHM_OP], root=tmp_path))
    assert stale_lock(SHM_OP, tmp_path) is None


def test_a_stale_lock_is_one_line_naming_it_and_how_to_clear_it(tmp_path):
    lock = _plant(tmp_path)
    with pytest.raises(E2WMError) as e:
        _bounded(lambda: check_locks([SHM_OP], root=tmp_path, stale_s=120))
    msg = str(e.value)
    assert "\n" not in msg and str(lock) in msg and f"rm {lock}" in msg
    assert lock.exists()   # reported, not deleted behind the user's back


def test_a_young_lock_nobody_holds_is_waited_on_then_refused(tmp_path):
    _plant(tmp_path, age_s=0)
    with pytest.raises(E2WMError, match="killed build"):
        _bounded(lambda: check_locks([SHM_OP], root=tmp_path, stale_s=1, poll_s=0.1))


def test_a_lock_a_live_build_holds_is_waited_for(tmp_path):
    """A process that holds the lock open (as torch's builder does) and releases it: no error, and the
    check returns once it is gone."""
    lock = tmp_path / SHM_OP / "lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_CREAT | os.O_EXCL)\n"
        "print('held', flush=True)\n"
        "time.sleep(2)\n"
        f"os.close(fd); os.remove({str(lock)!r})\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        past = os.stat(lock).st_mtime - 3600
        os.utime(lock, (past, past))    # old, but held: not stale
        os.utime(lock.parent, (past, past))
        assert stale_lock(SHM_OP, tmp_path, stale_s=1) is None
        _bounded(lambda: check_locks([SHM_OP], root=tmp_path, stale_s=1, poll_s=0.1))
    finally:
        holder.wait(30)
    assert not lock.exists()


@pytest.mark.slow
def test_two_rank_launch_reports_a_stale_lock_instead_of_hanging(tmp_path, tiny_model_dir):
    ext = tmp_path / "ext"
    lock = _plant(ext)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tiny_train_config(
        tmp_path / "run", tiny_model_dir, write_rows(tmp_path / "data.jsonl"), optim={"micro_batch_size": 1})))
    # each failing rank records its failure (torchrun may stop rank 0 before it prints once rank 1 failed)
    errors = tmp_path / "errors"
    errors.mkdir()
    env = edist.cpu_env({"TORCH_EXTENSIONS_DIR": str(ext), "PYTHONPATH": str(ROOT), "E2WM_ERROR_DIR": str(errors)})
    p = subprocess.run(edist.torchrun_cmd(2, edist.free_port(), "e2wm.train", ["--config", str(tmp_path / "t.yaml")]),
                       env=env, capture_output=True, text=True, timeout=300)   # a hang would fail here
    records = [json.loads(f.read_text()) for f in sorted(errors.glob("rank-*.json"))]
    assert p.returncode != 0 and records, p.stderr[-3000:]
    for r in records:
        assert r["kind"] == "bad_input" and "\n" not in r["message"], r
        assert str(lock) in r["message"] and f"rm {lock}" in r["message"], r
    assert not (tmp_path / "run").exists()   # nothing written


def test_an_op_to_build_without_ninja_on_path_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # a rank started by pdsh without the venv's bin (and no system ninja)
    with pytest.raises(E2WMError, match=r"ninja is not on this rank's PATH.*cpu_adam.*deepspeed-env"):
        check_locks(["cpu_adam"], root=tmp_path)
    monkeypatch.setattr("e2wm.train.extensions.prebuilt", lambda name: True)   # built at install: nothing to build
    check_locks(["cpu_adam"], root=tmp_path)


def test_a_run_across_nodes_builds_into_a_per_node_folder(monkeypatch):
    from e2wm.train import extensions
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_SIZE", "4")          # deepspeed's launcher: one node
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert not extensions.use_node_local_root() and "TORCH_EXTENSIONS_DIR" not in os.environ
    monkeypatch.setenv("LOCAL_SIZE", "2")          # two nodes
    assert extensions.use_node_local_root()
    import socket
    assert os.environ["TORCH_EXTENSIONS_DIR"].endswith(f"e2wm-torch-ext-{socket.gethostname()}")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/chosen")   # the user's choice stays
    assert not extensions.use_node_local_root() and os.environ["TORCH_EXTENSIONS_DIR"] == "/chosen"
