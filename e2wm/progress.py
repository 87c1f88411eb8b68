"""Progress where the user looks: a live bar on a terminal, plain lines at a steady interval elsewhere.

A Ray job log or a Slurm output file is not a terminal; there a bar prints nothing until the end,
so `Plain` writes one line per task every `E2WM_PROGRESS_S` seconds (default 30) and one when done.
"""
from __future__ import annotations

import os
import sys
import time


def progress(rate: bool = False):
    """A context manager with add_task / advance / update / console.print, like rich's Progress."""
    if sys.stderr.isatty():
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        extra = (TaskProgressColumn(show_speed=True), TimeRemainingColumn()) if rate else ()
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra,
                        TimeElapsedColumn(), transient=True)
    return Plain(float(os.environ.get("E2WM_PROGRESS_S", "30")))


class _Console:
    def print(self, *args, **_):
        print(*args, file=sys.stderr, flush=True)


class Plain:
    """Plain progress lines on stderr: `description: done/total (pct) rate/s, elapsed`."""

    def __init__(self, every_s: float = 30.0):
        self.every_s = every_s
        self.console = _Console()
        self.tasks: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            for t in self.tasks:
                if t["shown"] != t["done"]:
                    self._line(t)
        return False

    def add_task(self, description: str, total=None) -> int:
        now = time.monotonic()
        self.tasks.append({"description": description, "total": total, "done": 0, "t0": now, "last": now,
                           "shown": 0})
        return len(self.tasks) - 1

    def update(self, task: int, total=None, advance: float = 0):
        t = self.tasks[task]
        if total is not None:
            t["total"] = total
        self.advance(task, advance)

    def advance(self, task: int, k: float = 1):
        t = self.tasks[task]
        t["done"] += k
        now = time.monotonic()
        if now - t["last"] >= self.every_s:
            t["last"] = now
            self._line(t)

    def _line(self, t: dict) -> None:
        t["shown"] = t["done"]
        elapsed = time.monotonic() - t["t0"]
        done = t["done"]
        count = f"{done:g}/{t['total']:g} ({100 * done / t['total']:.0f}%)" if t["total"] else f"{done:g}"
        rate = f", {done / elapsed:.3g}/s" if elapsed > 0 and done else ""
        self.console.print(f"{t['description']}: {count}{rate}, {elapsed:.0f} s elapsed")
