"""`python -m e2wm.eval ARGS` = `e2wm eval ARGS`, for launchers (torchrun, deepspeed, Ray Train): each rank
scores its share of every suite, rank 0 writes the results."""
from __future__ import annotations

import sys

from e2wm.argparser import Parser
from e2wm.config import add_field_flags, flag_values
from e2wm.eval.config import EvalConfig

CONFIG = EvalConfig


def add_flags(parser) -> list[str]:
    """`e2wm eval`'s flags on `parser`: --suites, --only and one per scalar EvalConfig field (their names)."""
    parser.add_argument("--suites", nargs="+", required=True, help="suite files or directories of them")
    parser.add_argument("--only", nargs="+", default=(), help="suite names (file stems) to keep")
    return add_field_flags(parser, EvalConfig)


def config(args, names: list[str]) -> EvalConfig:
    """The EvalConfig of parsed `add_flags` flags (`names`: the field flags)."""
    return EvalConfig(suites=tuple(args.suites), only=tuple(args.only), **flag_values(args, names))


def run(cfg: EvalConfig, log=print) -> dict:
    """The eval stage: every rank scores its share, rank 0 writes the results; those results."""
    from e2wm.eval import harness
    results = harness.evaluate(cfg, log=log)
    log(f"wrote {cfg.out}/results.json and results.md")
    return results


def entry(argv=None) -> int:
    """The eval stage from its command line; bad input raises E2WMError."""
    parser = Parser(prog="e2wm eval", description="score a model (and adapter) on suites in E2WM's released format")
    names = add_flags(parser)
    run(config(parser.parse_args(argv), names))
    return 0


def main(argv=None) -> int:
    from e2wm.train.dist import guarded
    return guarded(lambda: entry(argv))


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:] if not a.startswith("--local_rank")]))
