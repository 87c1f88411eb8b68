"""e2wm.train.hosts: the hostfile, the rendezvous address, and a `.deepspeed_env` that arrives intact.

The file is fed through DeepSpeed's own runner code (PDSHRunner.add_export, the `export K=V; ` it builds) and
a real shell with an empty environment, as pdsh's remote side would run it. About 2 s."""
import os
import socket
import subprocess
import sys
from argparse import Namespace

import pytest

from e2wm.errors import E2WMError
from e2wm.train import hosts


def _remote_env(env_file, *names):
    """What a rank started by pdsh sees: DeepSpeed's export prefix run by a shell started with sshd's PATH."""
    from deepspeed.launcher.multinode_runner import PDSHRunner
    runner = PDSHRunner(Namespace(user_args=[], user_script="x", launcher_args="", ssh_port=None, venv_script=None,
                                  no_python=False, module=True, no_local_rank=False, save_pid=False,
                                  enable_each_rank_log="None", master_addr="10.0.0.1", master_port=1), "")
    with open(env_file) as fd:   # DeepSpeed's own reading (runner.py)
        for line in fd.readlines():
            key, val = line.split("=", maxsplit=1)
            runner.add_export(key, val)
    cmd, _, _ = runner.get_cmd({}, {"a": 1})
    exports = cmd[cmd.index("-w") + 2]   # "export A=1; export B=2; "
    probe = "; ".join(f'printf "%s\\0" "${n}"' for n in names)
    out = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", "bash", "-c", exports + probe],
                         capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.split("\0")))


def test_the_env_file_reaches_a_remote_shell_intact(tmp_path):
    environ = {"HF_HOME": "/shared/hf home", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "eth1", "E2WM_DIST_TIMEOUT_S": "7200",
               "PYTHONPATH": "/opt/lib", "HF_TOKEN": "secret", "E2WM_ODD": 'a "b" $c `d` \\e',
               "UNRELATED": "x", "PATH": "/venv/bin:/usr/bin"}
    out = tmp_path / "env"
    hosts.write_deepspeed_env(out, environ, python="/opt/venv/bin/python", cwd="/repo")
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    text = out.read_text()
    assert "HF_TOKEN" not in text and "UNRELATED" not in text   # no secrets, nothing unasked
    names = ("PATH", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME",
             "E2WM_DIST_TIMEOUT_S", "PYTHONPATH", "E2WM_ODD", "TORCH_EXTENSIONS_DIR")
    seen = _remote_env(out, *names)
    assert seen["PATH"] == "/opt/venv/bin:/usr/bin:/bin"   # the venv ahead of the node's own PATH
    for name in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME",
                 "E2WM_DIST_TIMEOUT_S", "E2WM_ODD"):
        assert seen[name] == environ[name], name
    assert seen["PYTHONPATH"] == "/repo:/opt/lib"   # as DeepSpeed's runner sets it
    assert seen["TORCH_EXTENSIONS_DIR"] == f"/tmp/e2wm-torch-ext-{socket.gethostname()}"   # expanded per node


def test_extension_dir_template_and_user_files(tmp_path):
    user = tmp_path / "home" / ".deepspeed_env"
    user.parent.mkdir()
    user.write_text("NCCL_SOCKET_IFNAME=ib1\n\nMY_VAR=7\n")   # a blank line: DeepSpeed itself would fail on it
    environ = {"E2WM_EXTENSIONS_DIR": "/scratch/$USER/ext-{host}", "NCCL_SOCKET_IFNAME": "eth0"}
    out = tmp_path / "env"
    entries = hosts.write_deepspeed_env(out, environ, merge=hosts.user_files(environ, home=user.parent,
                                                                             cwd=tmp_path), python="/v/bin/python")
    assert entries["TORCH_EXTENSIONS_DIR"] == "/scratch/$USER/ext-$(hostname)"
    assert entries["NCCL_SOCKET_IFNAME"] == "ib1" and entries["MY_VAR"] == "7"   # the user's own entries win
    assert "\n\n" not in out.read_text()
    (tmp_path / "bad").write_text("no equals sign\n")
    with pytest.raises(E2WMError, match="not NAME=value"):
        hosts.write_deepspeed_env(tmp_path / "o2", {}, merge=[tmp_path / "bad"])


def test_hostfile_lines_are_checked(tmp_path):
    f = tmp_path / "hostfile"
    f.write_text("# two nodes\nnode-a slots=2\n\nnode-b   slots = 4  # comment\n")
    assert hosts.read_hostfile(f) == [("node-a", 2), ("node-b", 4)]
    for bad, match in (("node-a\n", "HOST slots=N"), ("node-a slots=0\n", "HOST slots=N"),
                       ("a slots=1\na slots=1\n", "listed twice"), ("# nothing\n", "no hosts")):
        f.write_text(bad)
        with pytest.raises(E2WMError, match=match):
            hosts.read_hostfile(f)
    with pytest.raises(E2WMError, match="no such file"):
        hosts.read_hostfile(tmp_path / "missing")


def test_master_addr_is_the_route_towards_the_other_host(tmp_path):
    f = tmp_path / "hostfile"
    f.write_text("127.0.0.1 slots=1\n127.0.0.1x slots=1\n")
    with pytest.raises(E2WMError, match="MASTER_ADDR"):   # the second host decides, and cannot be resolved
        hosts.master_addr(f, {})
    f.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    assert hosts.master_addr(f, {}) == "127.0.0.1"
    assert hosts.master_addr(f, {"MASTER_ADDR": "10.1.2.3"}) == "10.1.2.3"   # an explicit choice wins


def test_the_command_line(tmp_path):
    f = tmp_path / "hostfile"
    f.write_text("localhost slots=1\n")
    run = [sys.executable, "-m", "e2wm.train.hosts"]
    env = {k: v for k, v in os.environ.items() if k != "MASTER_ADDR"}
    p = subprocess.run([*run, "master-addr", str(f)], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "127.0.0.1", p.stderr
    p = subprocess.run([*run, "master-addr", str(tmp_path / "none")], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and p.stderr.strip().startswith("e2wm: error:") and len(p.stderr.splitlines()) == 1
    p = subprocess.run([*run, "deepspeed-env", "--out", str(tmp_path / "ds_env")], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0 and "TORCH_EXTENSIONS_DIR=" in (tmp_path / "ds_env").read_text()
