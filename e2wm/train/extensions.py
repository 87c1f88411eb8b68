"""DeepSpeed's JIT-built ops and the lock that guards their build.

torch builds an extension (DeepSpeed's `deepspeed_shm_comm` on CPU, `cpu_adam` for optimizer offload)
under `$TORCH_EXTENSIONS_DIR/NAME/` (default `~/.cache/torch_extensions/pyXY_ACC/NAME/`), holding a file
`lock` there, created exclusively and kept open for the build. Every later load of the op waits, with no
timeout, until that file is gone - even when the op was built long ago. A process killed mid-build leaves
the file behind, and every DeepSpeed start on the machine then hangs in silence. Before an op loads we
look: a lock that no process on this machine holds open, and whose build folder has not changed for
`E2WM_EXT_LOCK_STALE_S` seconds (default 120; a build on another node of a shared folder keeps writing),
is reported in one line that says how to clear it. An op that must be built needs `ninja` on this rank's
PATH (a rank started by pdsh has sshd's PATH unless `.deepspeed_env` puts the venv's bin on it): its absence
is one line too, not torch's traceback.

Across nodes each node should build into its own folder: a cache on a shared $HOME is contended by every
node at once. `node_local_root()` is the folder a multi-node run uses when TORCH_EXTENSIONS_DIR is unset.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

from e2wm.errors import E2WMError

SHM_OP = "deepspeed_shm_comm"
STALE_ENV = "E2WM_EXT_LOCK_STALE_S"


def extensions_root() -> Path:
    """Where torch builds extensions: $TORCH_EXTENSIONS_DIR, or its default per-Python/accelerator folder."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    import sys

    import torch
    from torch.utils.cpp_extension import get_default_build_root
    acc = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    if getattr(torch.version, "hip", None):
        acc = f"rocm{torch.version.hip.replace('.', '')}"
    return Path(get_default_build_root()) / f"py{sys.version_info.major}{sys.version_info.minor}_{acc}"


def node_local_root() -> Path:
    """A per-node build folder on node-local storage: $TMPDIR (or /tmp)/e2wm-torch-ext-HOSTNAME."""
    from e2wm.train.hosts import EXT_DIR_NAME
    return Path(tempfile.gettempdir()) / f"{EXT_DIR_NAME}-{socket.gethostname()}"


def spans_nodes() -> bool:
    """True when the launcher's world is larger than this node's share of it."""
    local = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE")   # torchrun's, deepspeed's
    return local is not None and int(os.environ.get("WORLD_SIZE", "1")) > int(local)


def use_node_local_root() -> bool:
    """Across nodes, with no TORCH_EXTENSIONS_DIR chosen, build into `node_local_root()` (sets the variable
    for this process). Returns True when it set it."""
    if os.environ.get("TORCH_EXTENSIONS_DIR") or not spans_nodes():
        return False
    os.environ["TORCH_EXTENSIONS_DIR"] = str(node_local_root())
    return True


def prebuilt(name: str) -> bool:
    """The op was compiled when DeepSpeed was installed (DS_BUILD_...=1): loading it builds nothing."""
    try:
        from deepspeed.git_version_info import installed_ops
    except ImportError:
        return False
    return bool(installed_ops.get(name))


def check_ninja(names) -> None:
    """Ops among `names` that will be JIT-built need ninja on PATH; one line naming the PATH when it is not."""
    import shutil
    need = [n for n in names if not prebuilt(n)]
    if need and shutil.which("ninja") is None:
        raise E2WMError(f"ninja is not on this rank's PATH ({os.environ.get('PATH', '')}), and DeepSpeed must "
                        f"build {', '.join(need)} here; put the venv's bin on PATH (for the deepspeed launcher over "
                        f"pdsh: a .deepspeed_env written by `python -m e2wm.train.hosts deepspeed-env`)")


def _open_files() -> set[str] | None:
    """Every path some process on this machine holds open (None where /proc cannot tell)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(proc / pid / "fd")
        except OSError:   # gone, or another user's process
            continue
        for fd in fds:
            try:
                held.add(os.readlink(proc / pid / "fd" / fd))
            except OSError:
                continue
    return held


def _last_change(folder: Path) -> float:
    """The newest mtime of the build folder and the files in it (a live build writes them)."""
    times = [folder.stat().st_mtime]
    for f in folder.iterdir():
        try:
            times.append(f.lstat().st_mtime)
        except OSError:
            continue
    return max(times)


def stale_lock(name: str, root: Path | None = None, stale_s: float | None = None) -> Path | None:
    """The lock of op `name` if it is stale (see the module doc), else None."""
    lock = (root or extensions_root()) / name / "lock"
    if not lock.exists():
        return None
    if stale_s is None:
        try:
            stale_s = float(os.environ.get(STALE_ENV, "120"))
        except ValueError:
            raise E2WMError(f"{STALE_ENV}={os.environ[STALE_ENV]!r}: not a number of seconds") from None
    held = _open_files()
    if held is None or str(lock.resolve()) in held:
        return None   # a live build here (or no way to know): torch's own wait is right
    try:
        quiet_for = time.time() - _last_change(lock.parent)
    except OSError:
        return None   # removed meanwhile: the build finished
    return lock if quiet_for >= stale_s else None


def check_locks(names, root: Path | None = None, stale_s: float | None = None, poll_s: float = 1.0) -> None:
    """Before ops `names` load: wait while a lock may still belong to a live build; a stale one is an error.

    A lock nobody here holds open is waited on until its build folder has been quiet for the limit
    (another node may be building into a shared folder), then refused. Ops that will be built need ninja.
    """
    check_ninja(names)
    root = root or extensions_root()
    while True:
        pending = []
        for name in names:
            lock = root / name / "lock"
            if not lock.exists():
                continue
            if stale_lock(name, root, stale_s) is not None:
                raise E2WMError(f"{lock}: a lock left by a killed build of DeepSpeed's {name} op (no process holds "
                                f"it and its folder has not changed for {STALE_ENV} seconds); every DeepSpeed "
                                f"start would wait on it forever; delete it (rm {lock}) and run again")
            held = _open_files()
            if held is None or str(lock.resolve()) in held:
                continue   # being built here: let torch wait for it
            pending.append(lock)
        if not pending:
            return
        time.sleep(poll_s)


def skip_shm_op(world: int) -> bool:
    """A one-process CPU run needs no shared-memory collective: tell DeepSpeed the op is not available, so
    that `process_group` neither JIT-builds it (tens of seconds on a fresh machine) nor waits on its lock.
    Returns True when it was switched off."""
    if world != 1:
        return False
    import deepspeed.ops
    ops = deepspeed.ops.__compatible_ops__   # probed once per process, then read by DeepSpeed's comm backend
    if ops.get(SHM_OP):
        ops[SHM_OP] = False
        return True
    return False
