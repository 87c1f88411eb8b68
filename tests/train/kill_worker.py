"""Run by tests under the deepspeed launcher: `e2wm train` whose every rank is SIGKILLed right after step K,
as if the node died there (fault injection lives in tests, not in the train config).

usage: kill_worker.py K [e2wm train args...]
"""
import os
import signal
import sys

from e2wm.train import recipe
from e2wm.train.__main__ import main


def _kill_at(k: int):
    def hook(done: int) -> None:
        if done == k:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    step, *argv = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]   # the launcher puts it first
    recipe.STEP_HOOKS.append(_kill_at(int(step)))
    exit_now(main(argv))
