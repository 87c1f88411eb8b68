"""`python -m e2wm.train --config FILE [--set section.key=value ...] [--resume STEP_DIR]`.

Run it under a launcher for several ranks, e.g. `deepspeed --num_gpus 8 -m e2wm.train --config F`
or `torchrun --nproc_per_node 8 -m e2wm.train --config F`; without one it is a single process.
"""
from __future__ import annotations

import argparse
import os
import sys

from e2wm.argparser import Parser
from e2wm.errors import E2WMError


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="e2wm train", description="Fine-tune a causal LM on e2wm tasks "
                                 "(LoRA / EWC-LoRA / EWC / KL) under DeepSpeed.")
    ap.add_argument("--config", default=None, help="YAML train config (default: the packaged preset)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config field (repeatable), e.g. --set optim.lr=1e-4")
    ap.add_argument("--resume", default=None, help="a step directory (default: checkpoint.resume, i.e. auto)")
    ap.add_argument("--force", action="store_true", help="train into a non-empty `out` that is not a training run")
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    from e2wm.train import dist as edist
    from e2wm.train.config import load_train_config, validate
    from e2wm.train.recipe import run

    a = build_parser().parse_args(argv)

    def train():
        cfg = load_train_config(a.config, a.set)
        # cheap: fails before any model, process group or output folder exists
        validate(cfg, edist.world_size(), a.resume, a.force)
        run(cfg, a.resume)
        return 0
    return guarded(train)


def guarded(entry) -> int:
    """`entry()`'s exit code; bad input (E2WMError) is one line on rank 0 and exit code 2."""
    from e2wm.quiet import quiet_libraries
    quiet_libraries()
    try:
        return entry() or 0
    except E2WMError as e:
        # every rank fails alike, so one line is enough; but a rank that exits first can get rank 0 killed
        # before it prints, so a launcher that reads every rank's output (e2wm.pipeline.launch) asks for all
        if os.environ.get("RANK", "0") == "0" or os.environ.get("E2WM_ERRORS_ON_EVERY_RANK") == "1":
            print(f"e2wm: error: {e}", file=sys.stderr)
        return 2


def exit_now(code: int) -> None:
    """Leave without the interpreter's teardown. Every file is written and the process group is gone by
    now, but C++ threads of torch.distributed / DeepSpeed can still abort a ZeRO-3 rank while Python
    unwinds ("terminate called without an active exception"), turning a finished run into a failed one."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
