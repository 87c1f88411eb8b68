"""Shared fixtures: the hand-written tiny scene and (with eai-eval installed) a RobotHow init graph."""
import copy
import json
from functools import lru_cache
from pathlib import Path

import pytest

TINY_PATH = Path(__file__).parent / "world" / "data" / "tiny_scene.json"


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
