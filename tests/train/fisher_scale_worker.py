"""Run by tests under torchrun (2 ranks): `e2wm fisher` runs of a model directory, which ZeRO-3 loads
partitioned: fp32; bf16 with gradient checkpointing; fp32 with checkpointing over every weight (the loop
path recomputed too); and bf16 at ZeRO-2 (replicated, loaded whole).

usage: fisher_scale_worker.py ROOT MODEL_DIR [fisher args...]; writes ROOT/<run>/ for each run above.
"""
import sys

from e2wm.train import dist as edist
from e2wm.train.fisher_run import entry as main_fisher

RUNS = {"z3": ["--zero-stage", "3"],
        "z3-bf16-gc": ["--zero-stage", "3", "--precision", "bf16", "--gradient-checkpointing"],
        "z3-all-gc": ["--zero-stage", "3", "--modules", "all", "--gradient-checkpointing"],
        "z2-bf16": ["--zero-stage", "2", "--precision", "bf16"]}


def main() -> int:
    root, model, rest = sys.argv[1], sys.argv[2], [a for a in sys.argv[3:] if not a.startswith("--local")]
    with edist.process_group():  # one group for all runs: re-initialising per run costs seconds
        for name, flags in RUNS.items():
            main_fisher([*rest, "--model", model, *flags, "--out", f"{root}/{name}"])
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    exit_now(main())
