"""`python -m e2wm.eval ARGS` = `e2wm eval ARGS`, for launchers (torchrun, deepspeed, Ray Train): each rank
scores its share of every suite, rank 0 writes the results."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    from e2wm.cli import main as cli_main
    return cli_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:] if not a.startswith("--local_rank")]))
