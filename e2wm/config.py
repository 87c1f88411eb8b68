"""Typed job configs read from YAML; every error names the file and the field."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from e2wm.collect.explore import ExploreConfig
from e2wm.collect.mcts import MCTSConfig
from e2wm.errors import E2WMError, reject_unknown_keys


def read_yaml(path: str | Path | None, preset: str) -> tuple[dict, str]:
    """(mapping, where) of a YAML file, or of the packaged preset when `path` is None."""
    if path is None:
        text, where = resources.files("e2wm").joinpath("presets", preset).read_text(), f"preset {preset}"
    else:
        p = Path(path)
        if not p.is_file():
            raise E2WMError(f"{p}: no such config file")
        text, where = p.read_text(), str(p)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise E2WMError(f"{where}{pos}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise E2WMError(f"{where}: expected a mapping of config keys")
    return data, where


@dataclass(frozen=True)
class CollectConfig:
    """One collection job: which episodes to make, and how to run the workers."""
    out: str = "out/collect"
    seed: int = 0
    scene_source: str = "procedural"   # plans in procedural apartments, or "robothow": each program's own goal
    scene_first: int = 0            # apartments (or RobotHow programs, by name order) scene_first .. + scenes - 1
    scenes: int = 20
    activities: tuple[str, ...] = ()   # plan activities (empty: the whole library)
    plans: int = 40
    explorations: int = 40
    mcts: MCTSConfig = field(default_factory=lambda: MCTSConfig(simulations=2000))
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    shard_size: int = 50
    workers: int = 2
    worker_cpus: float = 1.0        # Ray CPUs per simulator actor (fractional packs more actors per node)
    max_in_flight: int = 2          # units queued per actor
    address: str = "local"          # "local": a private Ray instance; "auto" or an address: join a cluster
    chaos_kill_every: int = 0       # fault injection: a worker exits hard after this many units (0: never)

    def __post_init__(self):
        ints = {"seed": 0, "scene_first": 0, "scenes": 1, "plans": 0, "explorations": 0,
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
        if self.plans + self.explorations == 0:
            raise E2WMError("collect config: plans and explorations are both 0: nothing to collect")

    def job_dict(self) -> dict:
        """What determines the episodes (not where or how fast they are made)."""
        return {"seed": self.seed, "scene_source": self.scene_source, "scene_first": self.scene_first, "scenes": self.scenes,
                "activities": list(self.activities), "plans": self.plans,
                "explorations": self.explorations, "mcts": self.mcts.to_dict(),
                "explore": self.explore.to_dict(), "shard_size": self.shard_size}

    def to_dict(self) -> dict:
        d = self.job_dict()
        d.update(out=self.out, workers=self.workers, worker_cpus=self.worker_cpus,
                 max_in_flight=self.max_in_flight, address=self.address,
                 chaos_kill_every=self.chaos_kill_every)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "collect config") -> "CollectConfig":
        reject_unknown_keys(d, {f.name for f in dataclasses.fields(cls)}, where)
        d = dict(d)
        try:
            if "mcts" in d:
                d["mcts"] = MCTSConfig.from_dict(_mapping(d["mcts"], where, "mcts"))
            if "explore" in d:
                e = _mapping(d["explore"], where, "explore")
                if "mix" in e:
                    e["mix"] = tuple(tuple(x) for x in e["mix"])
                d["explore"] = ExploreConfig(**e)
            if "activities" in d:
                d["activities"] = tuple(d["activities"] or ())
            return cls(**d)
        except TypeError as e:
            raise E2WMError(f"{where}: {e}") from None
        except E2WMError as e:
            raise E2WMError(f"{where}: {e}") from None


def _mapping(v, where: str, name: str) -> dict:
    if not isinstance(v, dict):
        raise E2WMError(f"{where}: {name} must be a mapping, got {type(v).__name__}")
    return dict(v)


@dataclass(frozen=True)
class DataConfig:
    """How `e2wm build-data` splits episodes and builds rows."""
    seed: int = 0
    eval_fraction: float = 0.2       # scenes held out for evaluation
    unseen_fraction: float = 0.15    # activities held out for the "unseen" suites
    weights: dict = field(default_factory=dict)   # task -> loss weight (default 1 / 0.7 / 1 / 1)
    ngram: int = 8                   # leak guard: n-gram length
    threshold: float = 0.5           # leak guard: share of a probe's n-grams found in training

    def __post_init__(self):
        for name in ("eval_fraction", "unseen_fraction", "threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise E2WMError(f"data config: {name}={v!r}: must be a number in [0, 1]")
        if not isinstance(self.ngram, int) or self.ngram < 2:
            raise E2WMError(f"data config: ngram={self.ngram!r}: must be an int >= 2")
        if not isinstance(self.weights, dict) or not all(isinstance(v, (int, float)) for v in self.weights.values()):
            raise E2WMError(f"data config: weights={self.weights!r}: must map task names to numbers")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "data config") -> "DataConfig":
        reject_unknown_keys(d, {f.name for f in dataclasses.fields(cls)}, where)
        try:
            return cls(**d)
        except E2WMError as e:
            raise E2WMError(f"{where}: {e}") from None
