"""argparse, with every usage error in one line and exit code 2 (the usage text is one `--help` away)."""
from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors read `PROG: error: MESSAGE (see PROG --help)`, one line, exit 2.

    Subparsers made from it are of this class too (argparse uses the parent's class).
    """

    def error(self, message: str):
        first = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def bounded(low: int, high: int):
    """An argparse `type` for an int in [low, high]: `--steps -1` is refused in one line naming the flag."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{v} is outside [{low:,}, {high:,}]")
        return v
    parse.__name__ = "int"
    return parse
