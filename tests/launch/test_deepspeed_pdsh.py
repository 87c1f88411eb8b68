"""The deepspeed launcher's multi-node path for real: launch/deepspeed_multinode.sh, pdsh over ssh, two nodes.

Two "nodes" are network namespaces joined by a veth pair (interface `e2wm0`, 10.77.0.1 and 10.77.0.2), each
with its own hostname (a UTS namespace) and its own sshd on port 2222 (a host key and an authorized key for
root generated in the test's temp dir; nothing under /etc or ~/.ssh is touched). Node A also has a
`docker0` holding 172.17.0.1, which `hostname -I` lists first. The ranks start in sshd's environment: a PATH
without the venv, and no system-wide `ninja` (each sshd runs in a mount namespace where any `ninja` on that
PATH is masked, as on a node whose ninja came from pip). Checked:
  - the rendezvous address is node A's veth address, not the decoy;
  - with the `.deepspeed_env` the script writes, the Fisher of the tiny model (ZeRO-3, gloo, 1 slot per host)
    runs and equals a 2-rank local `deepspeed` run, each node using its own JIT cache folder;
  - the same launch without the file fails on both nodes with e2wm's one line about ninja on PATH.
Needs root, `ip`, `unshare`, `pdsh` and `openssh-server` (Debian packages); skipped without them.
About 55 s on 2 cores (local run 15 s, pdsh run 25 s, failing run 10 s, setup 2 s).
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_helpers import ROOT, check, launch, wait_for

from e2wm.train import dist as edist
from e2wm.train.fisher_io import load_fisher

pytestmark = pytest.mark.multinode

SSHD = "/usr/sbin/sshd"
ADDR = {"node-a": "10.77.0.1", "node-b": "10.77.0.2"}
PORT = 2222   # each namespace has its own ports: no clash with the machine's or another test's
FISHER = ["--corpus", "builtin:pydoc", "--max-samples", "8", "--max-length", "32", "--zero-stage", "3"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd)"
    for tool in ("ip", "unshare", "nsenter", "pdsh", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (apt-get install iproute2 util-linux pdsh openssh-client openssh-server)"
    if not os.access(SSHD, os.X_OK):
        return f"needs {SSHD} (apt-get install openssh-server)"
    return None


def _sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _in_node(ns: str, host: str, *cmd) -> list[str]:
    """`cmd` inside namespace `ns`, with hostname `host` (its own UTS and mount namespaces)."""
    return ["ip", "netns", "exec", ns, "unshare", "--uts", "--mount", "sh", "-c", f'hostname {host} && exec "$@"',
            "sh", *cmd]


class Nodes:
    def __init__(self, tmp: Path):
        self.tmp, self.tag = tmp, f"e2wm-pdsh-{os.getpid()}"
        self.ns = {"node-a": f"{self.tag}-a", "node-b": f"{self.tag}-b"}
        self.sshd: dict[str, subprocess.Popen] = {}
        self.made_run_dir = False

    def up(self):
        t = self.tmp
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "host_key"))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "id"))
        (t / "authorized_keys").write_text((t / "id.pub").read_text())
        a, b = self.ns["node-a"], self.ns["node-b"]
        for ns in (a, b):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", a, "link", "add", "docker0", "type", "veth", "peer", "name", "docker0p")   # the decoy
        _sh("ip", "-n", a, "addr", "add", "172.17.0.1/16", "dev", "docker0")
        _sh("ip", "-n", a, "link", "set", "docker0", "up")
        _sh("ip", "-n", a, "link", "set", "docker0p", "up")
        _sh("ip", "-n", a, "link", "add", "e2wm0", "type", "veth", "peer", "name", "e2wm0", "netns", b)
        for host, ns in self.ns.items():
            _sh("ip", "-n", ns, "addr", "add", f"{ADDR[host]}/24", "dev", "e2wm0")
            _sh("ip", "-n", ns, "link", "set", "e2wm0", "up")
        if not Path("/run/sshd").is_dir():   # sshd's privilege separation folder (systemd makes it at boot)
            Path("/run/sshd").mkdir(mode=0o755, parents=True)
            self.made_run_dir = True
        for host, ns in self.ns.items():
            conf = t / f"sshd-{host}.conf"
            conf.write_text(f"Port {PORT}\nListenAddress {ADDR[host]}\nHostKey {t / 'host_key'}\n"
                            f"AuthorizedKeysFile {t / 'authorized_keys'}\nPidFile none\nUsePAM no\nStrictModes no\n"
                            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                            "KbdInteractiveAuthentication no\nLogLevel ERROR\n")
            self.sshd[host] = subprocess.Popen(_in_node(ns, host, SSHD, "-D", "-e", "-f", str(conf)),
                                               stdout=subprocess.DEVNULL, stderr=open(t / f"sshd-{host}.log", "w"))
        config = "".join(f"Host {h}\n  HostName {ADDR[h]}\n" for h in ADDR) + (
            f"Host *\n  Port {PORT}\n  User root\n  IdentityFile {t / 'id'}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n")
        (t / "ssh_config").write_text(config)
        (t / "bin").mkdir()   # the launcher side's `ssh` (DeepSpeed's ssh check, pdsh) reads our config
        (t / "bin" / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {t / "ssh_config"} "$@"\n')
        (t / "bin" / "ssh").chmod(0o755)
        (t / "hostfile").write_text("node-a slots=1\nnode-b slots=1\n")
        (t / "home").mkdir()   # the launcher's $HOME: no ~/.deepspeed_env of the machine's user is read
        wait_for(lambda: self.remote("true").returncode == 0, 20, "both sshd to accept logins")
        self.mask_ninja()

    def remote(self, command: str) -> subprocess.CompletedProcess:
        """pdsh on both nodes from node A (as DeepSpeed's launcher runs it)."""
        return subprocess.run(["ip", "netns", "exec", self.ns["node-a"], "pdsh", "-R", "ssh", "-w", "node-a,node-b",
                               command], capture_output=True, text=True, env=self.env(), timeout=30)

    def mask_ninja(self):
        """No `ninja` on the nodes' own PATH: a non-executable file over each, in each sshd's mount namespace."""
        paths = {line.split(": ", 1)[1] for line in self.remote("echo $PATH").stdout.splitlines()}
        venv_bin = str(Path(sys.executable).parent)
        ninjas = {Path(d, "ninja") for path in paths for d in path.split(":") if d and d != venv_bin}
        for ns in self.ns.values():
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            sshd = [pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"]
            for ninja in ninjas:
                if ninja.is_file() and os.access(ninja, os.X_OK):
                    _sh("nsenter", "-t", sshd[0], "-m", "mount", "--bind", "/dev/null", str(ninja))

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("DS_ENV_FILE", "MASTER_ADDR")}
        env.update(PATH=f"{self.tmp / 'bin'}{os.pathsep}{env['PATH']}", HOME=str(self.tmp / "home"))
        env.update(extra)
        return env

    def launch(self, cmd: list[str], timeout: int = 240, **env) -> subprocess.CompletedProcess:
        """`cmd` on node A, as the first host of the hostfile."""
        return launch(_in_node(self.ns["node-a"], "node-a", *cmd), timeout=timeout, **self.env(**env))

    def down(self):
        for ns in self.ns.values():   # every process still in a node: the sshd and any session or rank
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for proc in self.sshd.values():
            proc.wait(timeout=10)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)   # takes its veth ends along
        if self.made_run_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    if why := _missing():
        pytest.skip(why)
    n = Nodes(tmp_path_factory.mktemp("pdsh"))
    try:
        try:
            n.up()
        except subprocess.CalledProcessError as e:
            if "netns" in " ".join(e.cmd) or "Operation not permitted" in (e.stderr or ""):
                pytest.skip(f"cannot make network namespaces here: {e.stderr.strip()}")
            raise
        yield n
    finally:
        n.down()


def test_master_addr_is_the_interface_that_reaches_the_other_node(nodes):
    first = _sh("ip", "netns", "exec", nodes.ns["node-a"], "hostname", "-I").stdout.split()[0]
    assert first == "172.17.0.1"   # what `hostname -I | awk '{print $1}'` used to pick: unreachable from node B
    p = _sh("ip", "netns", "exec", nodes.ns["node-a"], sys.executable, "-m", "e2wm.train.hosts", "master-addr",
            str(nodes.tmp / "hostfile"), env=nodes.env(PYTHONPATH=str(ROOT)))
    assert p.stdout.strip() == ADDR["node-a"]


def test_the_far_side_has_sshds_path_and_no_ninja(nodes):
    out = check(nodes.remote('echo "$PATH"; for d in $(echo "$PATH" | tr : " "); do '
                             '[ -f "$d/ninja" ] && [ -x "$d/ninja" ] && echo "runnable $d/ninja"; done; true')).stdout
    assert str(Path(sys.executable).parent) not in out and "runnable" not in out, out


def _fisher(out) -> dict:
    tensors, _ = load_fisher(out)
    return tensors


def test_the_fisher_over_pdsh_needs_the_env_file_and_equals_a_local_run(nodes, tiny_model_dir):
    t = nodes.tmp
    args = ["--model", str(tiny_model_dir), *FISHER]
    # the reference: 2 ranks on this machine (the deepspeed launcher's local path)
    local = edist.deepspeed_cmd(2, edist.free_port(), "e2wm.train.fisher_run", [*args, "--out", str(t / "local")])
    check(launch(local))
    built = Path(edist.cpu_env()["TORCH_EXTENSIONS_DIR"]) / "deepspeed_shm_comm"
    seeded = time.time()
    for host in ADDR:   # each node's own JIT cache, seeded with the op the local run built (its build is ~40 s)
        shutil.copytree(built, t / f"ext-{host}" / "deepspeed_shm_comm", ignore=shutil.ignore_patterns("lock"))
    env = dict(GLOO_SOCKET_IFNAME="e2wm0", E2WM_DIST_TIMEOUT_S="120", E2WM_EXTENSIONS_DIR=str(t / "ext-{host}"),
               E2WM_DS_ENV_OUT=str(t / "deepspeed_env"), MASTER_PORT=str(edist.free_port()))
    p = check(nodes.launch(["bash", str(ROOT / "launch" / "deepspeed_multinode.sh"), str(t / "hostfile"), "fisher",
                            *args, "--out", str(t / "pdsh")], **env))
    assert f"--master_addr={ADDR['node-a']}" in p.stdout + p.stderr
    written = (t / "deepspeed_env").read_text()
    assert f"PATH={Path(sys.executable).parent}:$PATH\n" in written and "GLOO_SOCKET_IFNAME=e2wm0\n" in written
    for host in ADDR:   # each node loaded the op from its own folder (torch's lock came and went there)
        assert (t / f"ext-{host}" / "deepspeed_shm_comm").stat().st_mtime > seeded, host
    ref, got = _fisher(t / "local"), _fisher(t / "pdsh")
    assert ref.keys() == got.keys() and ref
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-6, atol=0)

    # the same launch, the env file removed: the ranks have sshd's PATH, and no ninja for the JIT op
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(t / "hostfile"),
           "--master_addr", ADDR["node-a"], "--master_port", str(edist.free_port()), "--module",
           "e2wm.train.fisher_run", *args, "--out", str(t / "without")]
    p = nodes.launch(cmd, DS_ENV_FILE=str(t / "no-such-file"), GLOO_SOCKET_IFNAME="e2wm0")
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "node-a: e2wm: error: ninja is not on this rank's PATH" in out, out[-3000:]   # rank 0's one line
    for host in ADDR:   # both ranks stopped with e2wm's bad-input code
        assert any(line.startswith(f"{host}: ") and "exits with return code = 2" in line for line in out.splitlines())
