"""Run by tests under torchrun: several `e2wm fisher` runs (ZeRO stages, interrupt + resume with another
micro-batch) in one process group.

usage: fisher_worker.py ROOT STAGES [fisher args...]; writes ROOT/z{stage}/ and ROOT/resume/.
"""
import sys

from e2wm.train import dist as edist
from e2wm.train.fisher import FisherInterrupted, main_fisher


def main() -> int:
    root, stages, rest = sys.argv[1], sys.argv[2], [a for a in sys.argv[3:] if not a.startswith("--local")]
    edist.init_distributed()  # one group for all runs: re-initialising per run costs seconds
    for st in stages.split(","):
        main_fisher([*rest, "--zero-stage", st, "--out", f"{root}/z{st}"])
    try:  # interrupted ZeRO-3 run, then the same command again resumes from the checkpoint
        main_fisher([*rest, "--zero-stage", "3", "--out", f"{root}/resume", "--checkpoint-every", "2",
                     "--stop-after", "3"])
        raise SystemExit("stop-after did not interrupt the run")
    except FisherInterrupted:
        pass
    # resumed with another micro-batch: the checkpoint counts samples, so it continues where it stopped
    main_fisher([*rest, "--zero-stage", "3", "--out", f"{root}/resume", "--checkpoint-every", "2", "--micro-batch", "3"])
    edist.shutdown()
    return 0


if __name__ == "__main__":
    from e2wm.train.__main__ import exit_now
    exit_now(main())
