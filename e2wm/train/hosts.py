"""Hosts of a multi-node DeepSpeed launch: the hostfile, the rendezvous address, and `.deepspeed_env`.

The `deepspeed` launcher over pdsh starts each node's ranks through ssh, in sshd's environment: the
launcher's own variables reach them only for a few families (PYTHON*, UCX*, MV2*, MLFLOW*, and NCCL* on
CUDA) plus what a `.deepspeed_env` file lists (DeepSpeed 0.19.8 reads `~/.deepspeed_env` then
`./.deepspeed_env`, or the file `$DS_ENV_FILE` names; each `NAME=value` line becomes `export NAME=value`
in the remote command, in double quotes when the value holds shell characters). `deepspeed_env()` writes
what the ranks need; `master_addr()` picks the address the other hosts reach this one at.

    python -m e2wm.train.hosts deepspeed-env [--out FILE]     # write the file (default ./.deepspeed_env)
    python -m e2wm.train.hosts master-addr HOSTFILE            # print the rendezvous address

Imports nothing heavy: the launch script runs it before every start.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from e2wm.errors import E2WMError

MASTER_ADDR = "MASTER_ADDR"   # set: used as is (the launch script's documented override)
EXT_TEMPLATE_ENV = "E2WM_EXTENSIONS_DIR"
# Each node builds DeepSpeed's JIT ops into its own folder on node-local storage: a shared $HOME's cache is
# contended by every node at once, and a build killed on one node leaves a lock that stalls all of them.
# `{host}` becomes the node's `$(hostname)`; the value is expanded by the remote shell, so $VARS work.
EXT_DIR_NAME = "e2wm-torch-ext"   # the JIT build folder's name under the temp dir (a node's: -HOSTNAME added)
DEFAULT_EXT_TEMPLATE = "${TMPDIR:-/tmp}/" + EXT_DIR_NAME + "-{host}"

# What a rank may need from the launching shell (exact names, then prefixes).
PASSED = ("HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_DATASETS_OFFLINE", "HF_DATASETS_CACHE",
          "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "TOKENIZERS_PARALLELISM", "CUDA_HOME", "LD_LIBRARY_PATH",
          "DS_ACCELERATOR", "OMP_NUM_THREADS", "TORCH_DISTRIBUTED_DEBUG", "TP_SOCKET_IFNAME")
PASSED_PREFIXES = ("NCCL_", "TORCH_NCCL_", "GLOO_", "FI_", "UCX_", "E2WM_")
NOT_PASSED = {EXT_TEMPLATE_ENV, "E2WM_DS_ENV_OUT"}   # read here, by this helper and the launch script
SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.I)   # never written into a file
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- the hostfile

def read_hostfile(path) -> list[tuple[str, int]]:
    """DeepSpeed's hostfile: `HOST slots=N` per line, `#` comments; [(host, slots)] in file order."""
    p = Path(path)
    if not p.is_file():
        raise E2WMError(f"hostfile {path}: no such file")
    hosts = []
    for n, raw in enumerate(p.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(\S+)\s+slots\s*=\s*(\d+)", line)
        if not m or int(m.group(2)) < 1:
            raise E2WMError(f"hostfile {path}, line {n}: {raw.strip()!r} is not `HOST slots=N` (N >= 1)")
        if any(h == m.group(1) for h, _ in hosts):
            raise E2WMError(f"hostfile {path}, line {n}: host {m.group(1)} listed twice")
        hosts.append((m.group(1), int(m.group(2))))
    if not hosts:
        raise E2WMError(f"hostfile {path}: no hosts")
    return hosts


# ---------------------------------------------------------------- the rendezvous address

def ssh_hostname(host: str) -> str:
    """The address ssh (and so pdsh) connects to for `host`: its ssh config's HostName, else `host`."""
    if shutil.which("ssh"):
        try:
            out = subprocess.run(["ssh", "-G", host], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            if key == "hostname" and value.strip():
                return value.strip()
    return host


def route_source(address: str) -> str:
    """This machine's address on the route towards `address` (the kernel's choice; nothing is sent)."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(address, 9, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise E2WMError(f"cannot resolve {address!r} ({e.strerror}); set {MASTER_ADDR} to this host's address "
                        f"on the network the nodes share") from None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect(sockaddr)   # UDP connect: a route lookup, no packet
        except OSError as e:
            raise E2WMError(f"no route from this host to {address} ({e.strerror}); set {MASTER_ADDR}") from None
        return s.getsockname()[0]


def master_addr(hostfile, environ=None) -> str:
    """The address the ranks meet at: $MASTER_ADDR when set; else this host's address on the interface that
    reaches the first other host of the hostfile (the first host when it is alone). `hostname -I`'s first
    address can be a bridge such as docker0 that no other node reaches."""
    environ = os.environ if environ is None else environ
    if environ.get(MASTER_ADDR):
        return environ[MASTER_ADDR]
    hosts = [h for h, _ in read_hostfile(hostfile)]
    return route_source(ssh_hostname(hosts[1] if len(hosts) > 1 else hosts[0]))


# ---------------------------------------------------------------- .deepspeed_env

def shell_literal(value: str) -> str:
    """`value` as DeepSpeed's runner needs it to arrive unchanged: it wraps a value holding shell characters
    in double quotes, inside which \\ $ ` and " must be escaped."""
    if "\n" in value:
        raise E2WMError(f"{value[:40]!r}...: a value with a newline cannot go into .deepspeed_env")
    return re.sub(r'([\\$`"])', r"\\\1", value)


def extensions_template(environ=None) -> str:
    """TORCH_EXTENSIONS_DIR as the remote shell should expand it: $E2WM_EXTENSIONS_DIR or the default,
    `{host}` replaced by `$(hostname)`."""
    environ = os.environ if environ is None else environ
    template = environ.get(EXT_TEMPLATE_ENV) or DEFAULT_EXT_TEMPLATE
    if "\n" in template or '"' in template:
        raise E2WMError(f"{EXT_TEMPLATE_ENV}={template!r}: no newlines or double quotes")
    return template.replace("{host}", "$(hostname)")


def passed(name: str) -> bool:
    return (name in PASSED or name.startswith(PASSED_PREFIXES)) and not SECRET.search(name)


def deepspeed_env(environ=None, python: str | None = None, cwd: str | None = None) -> dict[str, str]:
    """NAME -> value as written to `.deepspeed_env` (ready for the remote shell): the venv's bin ahead of the
    node's PATH (ninja for JIT builds, the venv's tools), the per-node extension cache, PYTHONPATH as the
    runner sets it, and the passed families that are set here (HF_*, NCCL_*, GLOO_*, E2WM_*, ...)."""
    environ = os.environ if environ is None else environ
    bin_dir = os.path.dirname(python or sys.executable)   # the venv's bin (not resolved: a venv's python is a link)
    entries = {"PATH": shell_literal(bin_dir) + ":$PATH", "TORCH_EXTENSIONS_DIR": extensions_template(environ)}
    if environ.get("PYTHONPATH"):   # the runner exports cwd:PYTHONPATH itself; a file entry would replace it
        entries["PYTHONPATH"] = shell_literal(f"{cwd or os.getcwd()}:{environ['PYTHONPATH']}")
    for name in sorted(environ):
        if passed(name) and name not in entries and name not in NOT_PASSED:
            entries[name] = shell_literal(environ[name])
    return entries


def user_files(environ=None, home: str | None = None, cwd: str | None = None) -> list[Path]:
    """The files DeepSpeed itself would read, in its order ($DS_ENV_FILE replaces the name `.deepspeed_env`)."""
    environ = os.environ if environ is None else environ
    name = environ.get("DS_ENV_FILE") or ".deepspeed_env"
    seen, out = set(), []
    for folder in (home or os.path.expanduser("~"), cwd or os.getcwd()):
        p = Path(folder, name)
        if p.is_file() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def read_env_file(path) -> dict[str, str]:
    """A `.deepspeed_env`: NAME=value lines (blank lines skipped: DeepSpeed itself fails on them)."""
    entries = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not _NAME.match(key.strip()):
            raise E2WMError(f"{path}, line {n}: {line.strip()!r} is not NAME=value")
        entries[key.strip()] = value
    return entries


def write_deepspeed_env(out, environ=None, merge=(), python: str | None = None, cwd: str | None = None) -> dict:
    """Write `deepspeed_env()` to `out` (mode 0600), then the entries of the files in `merge`, which win:
    a variable a user wrote there on purpose is theirs. Returns what was written."""
    entries = deepspeed_env(environ, python=python, cwd=cwd)
    for f in merge:
        if Path(f).resolve() != Path(out).resolve():
            entries.update(read_env_file(f))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{k}={v}\n" for k, v in entries.items()))
    os.replace(tmp, out)
    return entries


# ---------------------------------------------------------------- command line

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m e2wm.train.hosts", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    env = sub.add_parser("deepspeed-env", help="write a .deepspeed_env for the ranks of a pdsh launch")
    env.add_argument("--out", default=".deepspeed_env", help="the file to write (default ./.deepspeed_env)")
    env.add_argument("--merge-user-files", action="store_true",
                     help="add the entries of ~/.deepspeed_env and ./.deepspeed_env (or $DS_ENV_FILE); theirs win")
    addr = sub.add_parser("master-addr", help="print the address the other hosts reach this one at")
    addr.add_argument("hostfile")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "deepspeed-env":
            write_deepspeed_env(a.out, merge=user_files() if a.merge_user_files else ())
            print(a.out)
        else:
            print(master_addr(a.hostfile))
    except E2WMError as e:
        print(f"e2wm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
