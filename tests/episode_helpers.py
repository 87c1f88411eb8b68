"""A small real collection for tests: plans, multi-agent explorations and counting stories from 8
procedural apartments, as one shard with the manifest `e2wm collect` would write."""
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from e2wm.collect.explore import STORY, ExploreConfig, explore_episode
from e2wm.collect.mcts import MCTSConfig
from e2wm.collect.plans import plan_episode
from e2wm.world.activities import ActivityError
from e2wm.world.world import ENGINE_VERSION

ACTS = ("go to sleep", "turn on light", "put away dishes", "make bed", "hang up towel", "wipe kitchen counter",
        "brush teeth", "put groceries in fridge", "open window", "take a nap", "iron a shirt", "brush hair")


@lru_cache(maxsize=None)
def small_collection_text() -> str:
    """Plans (of ACTS, two of them held out), multi-agent explorations and single-agent counting
    stories from 8 procedural apartments, as one shard's JSON lines (cached)."""
    eps = []
    for seed in range(8):
        for a in ACTS:
            try:
                eps.append(plan_episode(f"procedural:{seed}", a, MCTSConfig(simulations=300), seed, len(eps)))
            except ActivityError:
                pass
        for u in range(4):
            eps.append(explore_episode(f"procedural:{seed}", ExploreConfig(), seed, 100 + u))
            eps.append(explore_episode(f"procedural:{seed}", STORY, seed, 200 + u))
    return "".join(e.content_json() + "\n" for e in eps)


def seal(d: Path) -> Path:
    """Write the manifest `e2wm collect` would for the shard-*.jsonl files in `d` (hand-made shards in
    tests), so that build-data's integrity checks pass; rerun it after changing a shard on purpose."""
    shards = {}
    for p in sorted(d.glob("shard-*.jsonl")):
        data = p.read_bytes()
        n = sum(1 for line in data.splitlines() if line.strip())
        shards[p.name] = {"units": [0, max(n - 1, 0)], "episodes": n, "failures": [],
                          "sha256": hashlib.sha256(data).hexdigest()}
    (d / "manifest.json").write_text(json.dumps({"job": {"hand-made": True}, "engine": ENGINE_VERSION,
                                                 "shards": shards}, indent=1))
    return d


def sealed_collection(d: Path) -> Path:
    """`d` holding the small collection as one shard and its manifest."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "shard-00000.jsonl").write_text(small_collection_text())
    return seal(d)
