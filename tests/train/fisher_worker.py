"""Run by tests under torchrun: several `e2wm fisher` runs in one process group: each ZeRO stage at
micro-batch 1, 4 and 8 (the default batch method), the loop method at ZeRO-3, and an interrupted ZeRO-3
run resumed with the same micro-batch and with another.

usage: fisher_worker.py ROOT STAGES [fisher args...]; writes ROOT/z{stage}-mb{1,4,8}/, ROOT/z3-loop/,
ROOT/resume-same/ and ROOT/resume-other/.
"""
import sys

from functools import partial

from e2wm.train import dist as edist
from e2wm.train import fisher
from e2wm.train.fisher import FisherInterrupted
from e2wm.train.fisher_run import entry as main_fisher


def main() -> int:
    root, stages, rest = sys.argv[1], sys.argv[2], [a for a in sys.argv[3:] if not a.startswith("--local")]
    with edist.process_group():  # one group for all runs: re-initialising per run costs seconds
        for st in stages.split(","):
            for mb in ("1", "4", "8"):
                main_fisher([*rest, "--zero-stage", st, "--micro-batch", mb, "--out", f"{root}/z{st}-mb{mb}"])
        main_fisher([*rest, "--zero-stage", "3", "--method", "loop", "--out", f"{root}/z3-loop"])
        for name, again in (("same", "4"), ("other", "3")):
            run = [*rest, "--zero-stage", "3", "--out", f"{root}/resume-{name}", "--checkpoint-every", "2"]
            whole = fisher.compute_fisher_deepspeed
            fisher.compute_fisher_deepspeed = partial(whole, stop_after=3)   # the test's fault injection
            try:  # interrupted at micro-batch 4; the same command (or another micro-batch) resumes it
                main_fisher([*run, "--micro-batch", "4"])
                raise SystemExit("stop_after did not interrupt the run")
            except FisherInterrupted:
                pass
            finally:
                fisher.compute_fisher_deepspeed = whole
            main_fisher([*run, "--micro-batch", again])
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    exit_now(main())
