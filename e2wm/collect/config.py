"""The collection job's config: which episodes to make, and how to run the workers.

Fields marked `run` change where or how fast the episodes are made, not the episodes; the others
are the job (`job_dict`), which a manifest records and a resume must match.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from e2wm.collect.explore import STORY, ExploreConfig
from e2wm.collect.mcts import MCTSConfig
from e2wm.config import build, to_plain
from e2wm.errors import E2WMError


@dataclass(frozen=True)
class CollectConfig:
    """One collection job: which episodes to make, and how to run the workers."""
    out: str = field(default="out/collect", metadata={"help": "output directory", "run": True})
    seed: int = field(default=0, metadata={"help": "job seed"})
    scene_source: str = field(default="procedural", metadata={
        "help": "procedural | robothow (plans toward each program's own goal)"})
    scene_first: int = field(default=0, metadata={
        "help": "first apartment seed / program index (RobotHow programs in name order)"})
    scenes: int = field(default=20, metadata={"help": "scenes (apartments or RobotHow programs)"})
    activities: tuple[str, ...] = field(default=(), metadata={
        "help": "plan activities (empty: the whole library)"})
    plans: int = field(default=40, metadata={"help": "plan episodes"})
    explorations: int = field(default=40, metadata={
        "help": "exploration episodes of several agents (object paths, bAbI suites)"})
    stories: int = field(default=40, metadata={
        "help": "exploration episodes of one agent (counting stories)"})
    mcts: MCTSConfig = field(default_factory=lambda: MCTSConfig(simulations=2000),
                             metadata={"help": "the planner (e2wm.collect.mcts.MCTSConfig)"})
    explore: ExploreConfig = field(default_factory=ExploreConfig, metadata={
        "help": "the multi-agent exploration (e2wm.collect.explore.ExploreConfig)"})
    story: ExploreConfig = field(default_factory=lambda: STORY, metadata={
        "help": "the single-agent counting stories (e2wm.collect.explore.ExploreConfig)"})
    shard_size: int = field(default=50, metadata={"help": "units per shard"})
    workers: int = field(default=2, metadata={"help": "simulator actors", "run": True})
    worker_cpus: float = field(default=1.0, metadata={
        "help": "Ray CPUs per actor (fractional packs more actors per node)", "run": True})
    max_in_flight: int = field(default=2, metadata={"help": "units queued per actor", "run": True})
    address: str = field(default="local", metadata={
        "help": "local (a private Ray instance), auto, or a cluster address", "run": True})
    chaos_kill_every: int = field(default=0, metadata={
        "help": "fault injection: a worker exits hard after K units (0: never)", "run": True})

    def __post_init__(self):
        ints = {"seed": 0, "scene_first": 0, "scenes": 1, "plans": 0, "explorations": 0, "stories": 0,
                "shard_size": 1, "workers": 1, "max_in_flight": 1, "chaos_kill_every": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise E2WMError(f"collect config: {name}={v!r}: must be an int >= {low}")
        if self.scene_source not in ("procedural", "robothow"):
            raise E2WMError(f"collect config: scene_source={self.scene_source!r}: must be 'procedural' "
                            f"or 'robothow'")
        if not isinstance(self.worker_cpus, (int, float)) or not 0 < self.worker_cpus <= 64:
            raise E2WMError(f"collect config: worker_cpus={self.worker_cpus!r}: must be in (0, 64]")
        if self.plans + self.explorations + self.stories == 0:
            raise E2WMError("collect config: plans, explorations and stories are all 0: nothing to collect")

    def job_dict(self) -> dict:
        """What determines the episodes (not where or how fast they are made)."""
        # Sections give their own to_dict: it is what episode keys hash.
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not f.metadata.get("run")}

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "collect config") -> "CollectConfig":
        return build(cls, d, where)


def _plain(v):
    return v.to_dict() if hasattr(v, "to_dict") else to_plain(v)
