"""Which stages of a pipeline folder are finished, and with which config.

OUT/pipeline.json maps each stage to the sha256 of everything that determines its output (its own
config and the hashes of the stages it reads) and whether it finished. A rerun skips a finished
stage with the same hash, resumes an unfinished one (each stage resumes itself: collection from its
manifest, the Fisher and training from their checkpoints), and refuses a stage whose config changed,
since its output and everything after it would no longer match.

A stage made of parts (the train stage's runs, the eval stage's evaluations) records each part once it is
finished, with the hash of that part's own config, under "parts": STAGE -> NAME -> sha256; a resumed stage
skips a recorded part whose hash matches (and whose output is there), so a stage killed in its third run
starts again at the third. `--redo` forgets a stage's parts with it. Every write first reads the file
again, so the stage runner's records and the pipeline's own are never lost to each other.
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
            self.data = self._checked(d)

    def _checked(self, d) -> dict:
        if not isinstance(d, dict) or not isinstance(d.get("stages"), dict) or not isinstance(d.get("parts", {}),
                                                                                             dict):
            raise E2WMError(f"{self.path}: not a pipeline state file; use another --out")
        return d

    def _reload(self) -> None:
        """The file as it is now (another State of this folder may have written since)."""
        if self.path.exists():
            self.data = self._checked(read_json(self.path, "pipeline state"))

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
        """Drop `stage`'s record and its parts' (`--redo`): it runs again as if never begun."""
        self._reload()
        had = self.data["stages"].pop(stage, None) is not None
        if self.data.get("parts", {}).pop(stage, None) is not None or had:
            write_json(self.path, self.data)

    def mark(self, stage: str, h: str, done: bool, **info) -> None:
        self._reload()
        self.data["stages"][stage] = {"sha256": h, "done": done, **info}
        write_json(self.path, self.data)

    def part_done(self, stage: str, name: str, h: str) -> bool:
        """True when part `name` of `stage` finished with hash `h`."""
        self._reload()
        return self.data.get("parts", {}).get(stage, {}).get(name) == h

    def mark_part(self, stage: str, name: str, h: str) -> None:
        """Record that part `name` of `stage` finished with hash `h`."""
        self._reload()
        self.data.setdefault("parts", {}).setdefault(stage, {})[name] = h
        write_json(self.path, self.data)
