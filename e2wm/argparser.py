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
