"""Shared fixtures: the hand-written tiny scene, (with eai-eval installed) a RobotHow init graph, and a small
real collection of plan and exploration episodes."""
import copy
import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

from episode_helpers import sealed_collection

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never touch the hub (e2wm leaves that to the user)

TINY_PATH = Path(__file__).parent / "world" / "data" / "tiny_scene.json"


def pytest_collection_modifyitems(config, items):
    """`multinode` tests are `slow` too (real daemons and clusters: minutes), so `-m "not slow"` stays quick;
    `gpu` tests need CUDA: skip them where there is none (CI, CPU boxes)."""
    for item in items:
        if item.get_closest_marker("multinode"):
            item.add_marker(pytest.mark.slow)
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu"):
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


@pytest.fixture
def episodes_dir(tmp_path):
    """An `e2wm collect`-like output directory holding the small collection (shard and manifest)."""
    return sealed_collection(tmp_path / "collect")


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory):
    """`e2wm build-data` output of the small collection (session-wide; do not modify it). No held-out training
    slices (`heldout_rows` 0: tests/data/test_heldout.py covers them), so its 86 training rows are those the
    training tests count steps by."""
    from e2wm.data.builder import build_data
    from e2wm.data.config import DataConfig
    root = tmp_path_factory.mktemp("dataset")
    sealed_collection(root / "collect")
    build_data(root / "collect", root / "data", DataConfig(eval_fraction=0.25, unseen_fraction=0.2, heldout_rows=0),
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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The built-in tiny Llama and the byte tokenizer, saved as a model directory (HF loading path)."""
    from e2wm.train.model import byte_tokenizer, tiny_causal_lm
    d = tmp_path_factory.mktemp("tiny-model")
    tiny_causal_lm().save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    return d
