"""Machines on one machine: "nodes" that are network namespaces joined by a veth pair, each with its own /tmp
and its own process tree.

What a node isolates: its network (a netns holding only `lo` and one end of the veth pair, 10.77.0.N/24 on an
interface named IFNAME; nothing else reaches it); its /tmp (a private mount namespace whose /tmp is a folder of
the test's own, so /tmp/ray, torchelastic's files and tempfile's names differ per node) and /dev/shm (a tmpfs
of its own: Ray's object store); its processes (a PID namespace with /proc remounted: `ray stop` or `ps` there
sees that node's processes only, and killing the namespace's first process kills everything on the node at
once, as a power loss would). What it shares with the host, as nodes of a cluster share a network file
system: the file system outside /tmp, and the folders under /tmp the test names (the model, the data set, the
run's output), bound at the same paths. Host name and users are the host's (no UTS or user namespace).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]   # the checkout

SUBNET = "10.77.0"
IFNAME = "e2wmv"   # the veth end's name inside each namespace (names are per namespace)
BIN = Path(sys.executable).parent


def unavailable() -> str | None:
    """Why nodes cannot be made here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, mount and PID namespaces)"
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (iproute2 / util-linux)"
    probe = f"e2wmprobe{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode:
        return f"`ip netns add` fails here: {p.stderr.strip()}"
    try:
        q = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--mount", "--pid", "--fork", "--mount-proc",
                            "true"], capture_output=True, text=True)
        if q.returncode:
            return f"cannot make mount and PID namespaces inside a netns: {q.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def veth_pair():
    """Two network namespaces joined by a veth pair: yields [(name, address)] for nodes 0 and 1
    (10.77.0.1, 10.77.0.2). Deleting a namespace deletes its veth end; both go, whatever happened."""
    tag = uuid.uuid4().hex[:6]
    names = [f"e2wm{tag}n{k}" for k in range(2)]
    made = []
    try:
        for ns in names:
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", f"e2wm{tag}a", "type", "veth", "peer", "name", f"e2wm{tag}b")
        for k, (ns, end) in enumerate(zip(names, (f"e2wm{tag}a", f"e2wm{tag}b"))):
            _ip("link", "set", end, "netns", ns)
            _ip("-n", ns, "link", "set", end, "name", IFNAME)
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{k + 1}/24", "dev", IFNAME)
            _ip("-n", ns, "link", "set", IFNAME, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield [(ns, f"{SUBNET}.{k + 1}") for k, ns in enumerate(names)]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# Inside the node's new mount namespace: each shared folder under /tmp is bound at the same path inside the
# node's own /tmp folder, which then becomes /tmp (recursively, so the shared folders come along).
_MOUNTS = r'''set -e
mount --make-rprivate /
node_tmp=$1; shift
while [ "$1" != -- ]; do
  inner="$node_tmp/${1#/tmp/}"; mkdir -p "$inner"; mount --bind "$1" "$inner"; shift
done
shift
mount --rbind "$node_tmp" /tmp
mount -t tmpfs -o size=1g tmpfs /dev/shm
exec "$@"
'''


class Node:
    """One node: netns `ns` at `address`, its /tmp the folder `tmp`, sharing `shared` (folders) with the host."""

    def __init__(self, ns: str, address: str, tmp: Path, shared: list[Path]):
        self.ns, self.address, self.tmp = ns, address, Path(tmp)
        # the checkout and the interpreter's environment too: in a checkout under /tmp (a CI clone) the
        # node's own /tmp would hide the venv's python and ray
        wanted = [Path(p).resolve() for p in [*shared, ROOT, sys.prefix, sys.base_prefix]]
        self.shared = [p for p in dict.fromkeys(wanted)
                       if not any(p != q and p.is_relative_to(q) for q in wanted)]
        self.tmp.mkdir(parents=True, exist_ok=True)

    def command(self, cmd: list[str]) -> list[str]:
        """`cmd` as the first process of a fresh PID namespace on this node (its own /tmp, its network)."""
        under_tmp = [str(p) for p in self.shared if p.is_relative_to("/tmp")]
        return ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--pid", "--fork", "--mount-proc",
                "sh", "-c", _MOUNTS, "sh", str(self.tmp), *under_tmp, "--", *cmd]

    def popen(self, cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
        with open(log, "ab") as f:
            return subprocess.Popen(self.command(cmd), env=env, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)


def init_pid(proc: subprocess.Popen) -> int | None:
    """PID (as the host sees it) of the first process of the PID namespace `proc` (ip netns exec -> unshare)
    made: unshare's child."""
    try:
        kids = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return None
    return kids[0].pid if kids else None


def enter(pid: int, cmd: list[str]) -> list[str]:
    """`cmd` run inside the node whose namespace's first process is `pid` (its mounts, network, processes)."""
    return ["nsenter", "-t", str(pid), "-m", "-n", "-p", "--", *cmd]


def kill_node(proc: subprocess.Popen) -> None:
    """Power the node off: SIGKILL to its PID namespace's first process takes every process of it along."""
    pid = init_pid(proc)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
