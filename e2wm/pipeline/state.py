"""Which stages of a pipeline folder are finished, and with which config.

OUT/pipeline.json maps each stage to the sha256 of everything that determines its output (its own
config and the hashes of the stages it reads) and whether it finished. A rerun skips a finished
stage with the same hash, resumes an unfinished one (each stage resumes itself: collection from its
manifest, the Fisher and training from their checkpoints), and refuses a stage whose config changed,
since its output and everything after it would no longer match.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import read_json, write_json

STATE = "pipeline.json"


def config_hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class State:
    def __init__(self, out: Path):
        self.path = out / STATE
        self.data = {"stages": {}}
        if self.path.exists():
            d = read_json(self.path, "pipeline state")
            if not isinstance(d, dict) or not isinstance(d.get("stages"), dict):
                raise E2WMError(f"{self.path}: not a pipeline state file; use another --out")
            self.data = d

    def check(self, stage: str, h: str) -> bool:
        """True when `stage` already finished with hash `h`; refuses one begun or finished with another."""
        rec = self.data["stages"].get(stage)
        if rec is None:
            return False
        if rec.get("sha256") != h:
            how = "finished" if rec.get("done") else "was started"
            raise E2WMError(f"stage {stage}: {how} in {self.path.parent} with another config (its section or "
                            f"an earlier stage changed); use another --out, or --redo {stage} to run it and "
                            f"the stages after it again")
        return bool(rec.get("done"))

    def finished(self, stage: str, h: str) -> bool:
        """True when `stage` finished with hash `h` (never raises)."""
        rec = self.data["stages"].get(stage) or {}
        return bool(rec.get("done")) and rec.get("sha256") == h

    def forget(self, stage: str) -> None:
        """Drop `stage`'s record (`--redo`): it runs again as if never begun."""
        if self.data["stages"].pop(stage, None) is not None:
            write_json(self.path, self.data)

    def mark(self, stage: str, h: str, done: bool, **info) -> None:
        self.data["stages"][stage] = {"sha256": h, "done": done, **info}
        write_json(self.path, self.data)
