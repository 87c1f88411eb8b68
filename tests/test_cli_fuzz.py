"""Random mutations of a valid scene, collect config and data config, fed to the CLI: every outcome
is exit 0 or a one-line error with exit 2, never a traceback."""
import copy
import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2wm.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCENE = json.loads((ROOT / "tests" / "world" / "data" / "tiny_scene.json").read_text())
COLLECT = yaml.safe_load((ROOT / "e2wm" / "presets" / "collect.yaml").read_text())
DATA = yaml.safe_load((ROOT / "e2wm" / "presets" / "data.yaml").read_text())

# Values a user (or a broken script) might put anywhere. Ints stay small or go far out of range, so an
# accepted mutation never asks for hours of work; strings include names the code knows.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([-1, 0, 1, 2, 3, 7, 10**12, -(2**63), 2**64]),
    st.sampled_from([0.0, -0.5, 0.5, 1.5, 1e308, float("inf"), float("nan")]),
    st.sampled_from(["", "x", "watch tv", "procedural", "local", "ON", "kitchen", "character", "../..",
                     "1e12", "null", "\u00e9\u6f22"]),
    st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base):
    """`base` with 1-3 edits: a value replaced, a key or item deleted, or an unknown key added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(VALUES)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=6))] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return doc


def _outcome(argv, capsys):
    rc = main([str(a) for a in argv])   # an exception here is a traceback: the test fails
    err = capsys.readouterr().err
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err
    if rc == 2:
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    return rc


FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _both(seen):
    """The mutations reached both outcomes: some were accepted and run, some refused."""
    assert {0, 2} <= set(seen), f"outcomes {sorted(set(seen))} of {len(seen)} runs"


def test_mutated_scenes(tmp_path, capsys):
    seen = []

    @FUZZ
    @given(scene=mutated(SCENE))
    def run(scene):
        f = tmp_path / "scene.json"
        f.write_text(json.dumps(scene))
        seen.append(_outcome(["explore", "--scene", f, "--agents", "1", "--steps", "4", "--json"], capsys))
    run()
    _both(seen)


def test_mutated_collect_configs(tmp_path_factory, capsys):
    seen = []

    @FUZZ
    @given(cfg=mutated(COLLECT))
    def run(cfg):
        d = tmp_path_factory.mktemp("collect")
        f = d / "collect.yaml"
        f.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        seen.append(_outcome(["collect", "--check", "--config", f, "--out", d / "out"], capsys))
        assert not (d / "out").exists()   # --check writes nothing
    run()
    _both(seen)


def test_mutated_data_configs(tmp_path_factory, capsys):
    from episode_helpers import sealed_collection
    episodes = sealed_collection(tmp_path_factory.mktemp("episodes"))
    seen = []

    @settings(FUZZ, max_examples=25)
    @given(cfg=mutated(DATA))
    def run(cfg):
        d = tmp_path_factory.mktemp("data")
        f = d / "data.yaml"
        f.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        rc = _outcome(["build-data", "--episodes", episodes, "--config", f, "--out", d / "out"], capsys)
        assert (d / "out").is_dir() == (rc == 0)   # a failed build leaves no half-written output
        seen.append(rc)
    run()
    _both(seen)
