"""Episode records: one row per plan or exploration episode, with a stable key.

Everything in an episode except `timing` is a pure function of (config, scene, seed, unit), so the
same job gives byte-identical `to_json()` output whatever worker ran it; wall-clock figures live in
`timing`, which `content_json()` and `content_hash()` leave out.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from e2wm.config import build
from e2wm.errors import E2WMError

KINDS = ("plan", "explore")


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


MAX_SEED = 2**63 - 1


def check_seed_unit(seed, unit) -> None:
    for name, v in (("seed", seed), ("unit", unit)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
            raise E2WMError(f"{name}={v!r}: must be an int in [0, {MAX_SEED}]")


def episode_key(config: dict, scene: str, seed: int, unit: int) -> str:
    """A stable 20-hex-digit key for one work unit of a job."""
    check_seed_unit(seed, unit)
    blob = canonical_json({"config": config, "scene": scene, "seed": seed, "unit": unit})
    # surrogateescape: a scene file name that is not UTF-8 must reach load_scene, which names it
    return hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()[:20]


@dataclass
class Episode:
    key: str
    kind: str                      # "plan" | "explore"
    scene: str                     # the scene source, e.g. "procedural:12" or "robothow:file1003_2"
    seed: int
    unit: int
    agents: int = 1                # characters acting in the episode
    engine: str = ""               # the world engine version that made it (ENGINE_VERSION)
    activity: str | None = None    # plan: the activity name (library or RobotHow title)
    goals: list[str] = field(default_factory=list)        # plan: goal facts, `Fact.text` form
    conditions: list[str] = field(default_factory=list)   # facts of the relevant objects at the start
    names: dict[str, str] = field(default_factory=dict)   # node id (as text) -> class, for nodes named
    steps: list[dict] = field(default_factory=list)       # {"agent", "line", "ok", ...} per line
    final: list[str] = field(default_factory=list)        # explore: where moved objects ended up
    reward: float | None = None    # plan: return of the plan as executed (undiscounted)
    success: bool = False          # plan: every line ran and every goal fact holds at the end
    stats: dict = field(default_factory=dict)   # deterministic search/exploration statistics
    timing: dict = field(default_factory=dict)  # wall-clock figures; not part of the content

    def __post_init__(self):
        if self.kind not in KINDS:
            raise E2WMError(f"episode {self.key}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def lines(self) -> list[str]:
        return [s["line"] for s in self.steps]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    def content_json(self) -> str:
        d = self.to_dict()
        del d["timing"]
        return canonical_json(d)

    def content_hash(self) -> str:
        return hashlib.sha256(self.content_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        if not isinstance(d, dict):
            raise E2WMError(f"episode: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise E2WMError(f"episode {d.get('key', '?')}: unknown field(s) {', '.join(unknown)}")
        missing = sorted(f for f in ("key", "kind", "scene", "seed", "unit") if f not in d)
        if missing:
            raise E2WMError(f"episode {d.get('key', '?')}: missing field(s) {', '.join(missing)}")
        ep = build(cls, d, f"episode {str(d['key'])[:40]}")   # every field's type
        for k, s in enumerate(ep.steps):
            if not (isinstance(s.get("agent"), int) and not isinstance(s["agent"], bool) and 0 <= s["agent"] < 64
                    and isinstance(s.get("line"), str) and isinstance(s.get("ok", False), bool)):
                raise E2WMError(f"episode {ep.key}: steps[{k}]: expected an agent index, a script line "
                                f"and ok")
        return ep

    @classmethod
    def from_json(cls, text: str) -> "Episode":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise E2WMError(f"episode: malformed JSON at {e.lineno}:{e.colno}: {e.msg}") from None
        return cls.from_dict(d)
