"""Library chatter we know about, kept off the user's terminal.

Every command prints its own lines and progress; a failure is one `e2wm: error:` line. Libraries add
lines of their own that say nothing the user can act on: transformers' FutureWarning that
`is_gradient_checkpointing` is deprecated (raised by peft and DeepSpeed reading the property, two lines
on stderr), and DeepSpeed's "Setting accelerator to CPU" (our own start line names the device). They
are filtered here, once per process, before the libraries load; anything not listed still shows.
"""
from __future__ import annotations

import logging
import warnings

KNOWN_WARNINGS = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),)
KNOWN_LOG_LINES = {"DeepSpeed": ("Setting accelerator to CPU",)}


class _Drop(logging.Filter):
    def __init__(self, phrases: tuple[str, ...]):
        super().__init__()
        self.phrases = phrases

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p in msg for p in self.phrases)


def quiet_libraries() -> None:
    """Filter the known warnings and log lines (idempotent; call before importing deepspeed)."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, phrases in KNOWN_LOG_LINES.items():
        logger = logging.getLogger(name)   # DeepSpeed configures this same logger when it loads
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(phrases))
