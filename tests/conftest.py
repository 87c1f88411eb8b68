"""Shared fixtures: the hand-written tiny scene, (with eai-eval installed) a RobotHow init graph, and a small
real collection of plan and exploration episodes."""
import copy
import json
from functools import lru_cache
from pathlib import Path

import pytest

from e2wm.collect.explore import STORY, ExploreConfig, explore_episode
from e2wm.collect.mcts import MCTSConfig
from e2wm.collect.plans import plan_episode
from e2wm.world.activities import ActivityError

TINY_PATH = Path(__file__).parent / "world" / "data" / "tiny_scene.json"


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need CUDA: skip them where there is none (CI, CPU boxes)."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@lru_cache(maxsize=None)
def _tiny() -> dict:
    return json.loads(TINY_PATH.read_text())


@pytest.fixture
def tiny_scene() -> dict:
    """Kitchen (1) + bedroom (2); the character (3) starts in the bedroom. A fresh copy per test."""
    return copy.deepcopy(_tiny())


@pytest.fixture
def tiny_two(tiny_scene) -> dict:
    """The tiny scene with a second character (4, agent 1) in the kitchen."""
    tiny_scene["nodes"].append({"id": 4, "class_name": "character", "category": "Characters",
                                "properties": [], "states": [], "prefab_name": "Male1",
                                "bounding_box": None})
    tiny_scene["edges"].append({"from_id": 4, "relation_type": "INSIDE", "to_id": 1})
    return tiny_scene


@lru_cache(maxsize=None)
def _robothow(k: int) -> dict:
    from e2wm.world.scenes import robothow_programs
    return robothow_programs()[k].graphs["init_graph"]


@pytest.fixture
def robothow_init() -> dict:
    """The first RobotHow program's initial graph (a fresh copy); skips without eai-eval."""
    pytest.importorskip("virtualhome_eval")
    return copy.deepcopy(_robothow(0))


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
    import hashlib

    from e2wm.world.world import ENGINE_VERSION
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


@pytest.fixture
def episodes_dir(tmp_path):
    """An `e2wm collect`-like output directory holding the small collection (shard and manifest)."""
    return sealed_collection(tmp_path / "collect")


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory):
    """`e2wm build-data` output of the small collection (session-wide; do not modify it)."""
    from e2wm.data.builder import build_data
    from e2wm.data.config import DataConfig
    root = tmp_path_factory.mktemp("dataset")
    sealed_collection(root / "collect")
    build_data(root / "collect", root / "data", DataConfig(eval_fraction=0.25, unseen_fraction=0.2),
               log=lambda *a: None)
    return root / "data"


@pytest.fixture
def cli_error(capsys):
    """`cli_error(argv, names)`: run `e2wm ARGV` in-process and check it failed as bad input must:
    exit 2, one line on stderr, no traceback, and the line names `names` (the file, field, flag or line).
    Returns the line."""
    from e2wm.cli import main

    def check(argv, names):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:   # argparse's exit
            rc = e.code
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, f"exit {rc}, stderr:\n{err}"
        assert "Traceback" not in err, err
        assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
        for n in ([names] if isinstance(names, str) else names):
            assert str(n) in lines[0], f"{n!r} not named in: {lines[0]}"
        return lines[0]
    return check
