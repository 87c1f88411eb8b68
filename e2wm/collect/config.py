"""The collection job's config: which episodes to make, and how to run the workers.

Fields marked `run` change where or how fast the episodes are made, not the episodes; the others
are the job (`job_dict`), which a manifest records and a resume must match.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from e2wm.collect.episodes import MAX_SEED
from e2wm.collect.explore import STORY, ExploreConfig
from e2wm.collect.mcts import MCTSConfig
from e2wm.config import build, check_ranges, to_plain
from e2wm.errors import E2WMError
from e2wm.world.activities import get_activity, library_digest


# Upper bounds keep a typo (`plans: 1e12`) from exhausting memory or time: a job at every episode
# bound plans 3,000,000 units (about 0.7 GB, under 10 s); `scenes` apartments are all built up front
# (about 2.5 ms each) to see which activities they can pose.
MAX_EPISODES = 1_000_000
ADDRESS = re.compile(r"(ray://)?(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


def _range(low, high, **meta) -> dict:
    return {"range": (low, high), **meta}


@dataclass(frozen=True)
class CollectConfig:
    """One collection job: which episodes to make, and how to run the workers."""
    out: str = field(default="out/collect", metadata={"help": "output directory", "run": True})
    seed: int = field(default=0, metadata=_range(0, MAX_SEED, help="job seed"))
    scene_source: str = field(default="procedural", metadata={
        "help": "procedural | robothow (plans toward each program's own goal)"})
    scene_first: int = field(default=0, metadata=_range(0, MAX_SEED // 2, help=(
        "first apartment seed / program index (RobotHow programs in name order)")))
    scenes: int = field(default=20, metadata=_range(1, 10_000, help=(
        "scenes (apartments or RobotHow programs)")))
    activities: tuple[str, ...] = field(default=(), metadata={
        "help": "plan activities (empty: the whole library)"})
    plans: int = field(default=40, metadata=_range(0, MAX_EPISODES, help="plan episodes"))
    explorations: int = field(default=40, metadata=_range(0, MAX_EPISODES, help=(
        "exploration episodes of several agents (object paths, bAbI suites)")))
    stories: int = field(default=40, metadata=_range(0, MAX_EPISODES, help=(
        "exploration episodes of one agent (counting stories)")))
    mcts: MCTSConfig = field(default_factory=lambda: MCTSConfig(simulations=2000),
                             metadata={"help": "the planner (e2wm.collect.mcts.MCTSConfig)"})
    explore: ExploreConfig = field(default_factory=ExploreConfig, metadata={
        "help": "the multi-agent exploration (e2wm.collect.explore.ExploreConfig)"})
    story: ExploreConfig = field(default_factory=lambda: STORY, metadata={
        "help": "the single-agent counting stories (e2wm.collect.explore.ExploreConfig)"})
    shard_size: int = field(default=50, metadata=_range(1, 100_000, help="units per shard"))
    workers: int = field(default=2, metadata=_range(1, 4096, help="simulator actors", run=True))
    worker_cpus: float = field(default=1.0, metadata=_range(0.01, 64.0, help=(
        "Ray CPUs per actor (fractional packs more actors per node)"), run=True))
    max_in_flight: int = field(default=2, metadata=_range(1, 1024, help="units queued per actor", run=True))
    address: str = field(default="local", metadata={
        "help": "local (a private Ray instance), auto, or a cluster address host:port or ray://host:port",
        "run": True})
    chaos_kill_every: int = field(default=0, metadata=_range(0, 1_000_000_000, help=(
        "fault injection: a worker exits hard after K units (0: never)"), run=True))

    def __post_init__(self):
        check_ranges(self)
        for name, cls in (("mcts", MCTSConfig), ("explore", ExploreConfig), ("story", ExploreConfig)):
            if not isinstance(getattr(self, name), cls):
                raise E2WMError(f"{name}: expected a {cls.__name__}, got {getattr(self, name)!r}")
        if not isinstance(self.out, str):
            raise E2WMError(f"out={self.out!r}: expected a path")
        if self.scene_source not in ("procedural", "robothow"):
            raise E2WMError(f"scene_source={self.scene_source!r}: must be 'procedural' or 'robothow'")
        if (not isinstance(self.activities, (tuple, list))
                or not all(isinstance(a, str) for a in self.activities)):
            raise E2WMError(f"activities={self.activities!r}: expected a list of activity names")
        for a in self.activities:   # an unknown name is refused here, before any worker starts
            try:
                get_activity(a)
            except E2WMError as e:
                raise E2WMError(f"activities: {e}") from None
        if not isinstance(self.address, str) or not (self.address in ("local", "auto")
                                                     or _valid_address(self.address)):
            raise E2WMError(f"address={self.address!r}: expected local, auto, host:port or ray://host:port")
        if self.plans + self.explorations + self.stories == 0:
            raise E2WMError("plans, explorations and stories are all 0: nothing to collect")

    def job_dict(self) -> dict:
        """What determines the episodes (not where or how fast they are made): the job fields and, for
        procedural apartments, the activity library they pose (`library_digest`)."""
        # Sections give their own to_dict: it is what episode keys hash.
        job = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if not f.metadata.get("run")}
        return {**job, "library": library_digest()} if self.scene_source == "procedural" else job

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "collect config") -> "CollectConfig":
        return build(cls, d, where)


def _valid_address(address: str) -> bool:
    m = ADDRESS.fullmatch(address)
    return m is not None and 1 <= int(m["port"]) <= 65535


def _plain(v):
    return v.to_dict() if hasattr(v, "to_dict") else to_plain(v)
