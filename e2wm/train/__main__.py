"""`python -m e2wm.train --config FILE [--set section.key=value ...] [--resume STEP_DIR]`.

Run it under a launcher for several ranks, e.g. `deepspeed --num_gpus 8 -m e2wm.train --config F`
or `torchrun --nproc_per_node 8 -m e2wm.train --config F`; without one it is a single process.
"""
from __future__ import annotations

import argparse

from e2wm.argparser import Parser
from e2wm.train.config import TrainConfig

CONFIG = TrainConfig


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


def run(cfg: TrainConfig, resume: str | None = None, force: bool = False, log=print):
    """The training stage: every check, cheap, before any model, process group or output folder exists;
    then the recipe. The run's folder."""
    from e2wm.train import dist as edist
    from e2wm.train import recipe
    from e2wm.train.config import validate
    validate(cfg, edist.world_size(), resume, force)
    return recipe.run(cfg, resume)


def entry(argv=None) -> int:
    """The training stage from its command line; bad input raises E2WMError."""
    from e2wm.train.config import load_train_config
    a = build_parser().parse_args(argv)
    run(load_train_config(a.config, a.set), a.resume, a.force)
    return 0


def main(argv=None) -> int:
    from e2wm.train.dist import guarded
    return guarded(lambda: entry(argv))


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    exit_now(main())
