"""Bad scenes and flags for `e2wm explore`, `e2wm plan` and `e2wm world demo`: one line, exit 2.

Each case writes (when it needs one) a scene file into tmp_path, runs the command in-process and
checks, through the `cli_error` fixture, that the one stderr line names the file, node, edge,
field or flag at fault.
"""
import copy
import json
import os
from pathlib import Path

import pytest

from e2wm.errors import SceneError
from e2wm.world.graph import Scene
from e2wm.world.scenes import load_scene

TINY = json.loads((Path(__file__).parent / "data" / "tiny_scene.json").read_text())


def _scene(tmp: Path, edit=None, text: str | bytes | None = None) -> str:
    """A scene file: the tiny scene changed by `edit(scene)` (which may return a replacement), or `text`."""
    p = tmp / "scene.json"
    if text is None:
        d = copy.deepcopy(TINY)
        d = (edit(d) if edit else None) or d
        text = json.dumps(d)
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def _node(d, i):
    return next(n for n in d["nodes"] if n["id"] == i)


def _set(obj, key, value):
    obj[key] = value


def _del(obj, key):
    del obj[key]


def _explore(edit=None, text=None, *flags):
    return lambda tmp: ["explore", "--scene", _scene(tmp, edit, text), "--steps", "5", "--agents", "1", *flags]


# (id, argv from tmp_path, what the line must name)
SCENES = [
    ("top-level-list", _explore(lambda d: [d]), ["scene.json", "list"]),
    ("top-level-number", _explore(text="3"), ["scene.json", "int"]),
    ("nodes-not-list", _explore(lambda d: _set(d, "nodes", {"a": 1})), ["scene.json", "'nodes'"]),
    ("nodes-missing", _explore(lambda d: {"edges": []}), ["scene.json", "'nodes'"]),
    ("edges-not-list", _explore(lambda d: _set(d, "edges", "x")), ["scene.json", "'edges'"]),
    ("node-not-object", _explore(lambda d: d["nodes"].append(5)), ["scene.json", "node #19"]),
    ("node-missing-id", _explore(lambda d: _del(d["nodes"][4], "id")), ["scene.json", "node #4", "'id'"]),
    ("node-id-string", _explore(lambda d: _set(d["nodes"][4], "id", "11")), ["node #4", "non-integer id"]),
    ("node-id-bool", _explore(lambda d: _set(d["nodes"][0], "id", True)), ["node #0", "non-integer id"]),
    ("node-id-float", _explore(lambda d: _set(d["nodes"][4], "id", 11.0)), ["node #4", "non-integer id"]),
    ("duplicate-id", _explore(lambda d: _set(d["nodes"][5], "id", 11)), ["node #5", "repeats id 11"]),
    ("class-name-int", _explore(lambda d: _set(_node(d, 12), "class_name", 7)), ["node 12", "class_name"]),
    ("class-name-empty", _explore(lambda d: _set(_node(d, 12), "class_name", "")), ["node 12", "class_name"]),
    ("category-list", _explore(lambda d: _set(_node(d, 12), "category", ["Props"])), ["node 12", "category"]),
    ("states-not-list", _explore(lambda d: _set(_node(d, 10), "states", "CLOSED")), ["node 10", "'states'"]),
    ("state-unknown", _explore(lambda d: _node(d, 10)["states"].append("MELTED")), ["node 10", "'MELTED'"]),
    ("state-not-string", _explore(lambda d: _node(d, 10)["states"].append({"a": 1})), ["node 10", "state"]),
    ("properties-dict", _explore(lambda d: _set(_node(d, 12), "properties", {"GRABBABLE": 1})),
     ["node 12", "'properties'"]),
    ("property-unknown", _explore(lambda d: _node(d, 12)["properties"].append("FLYING")),
     ["node 12", "'FLYING'"]),
    ("edge-not-object", _explore(lambda d: d["edges"].append([1, "ON", 2])), ["scene.json", "edge #"]),
    ("edge-missing-to", _explore(lambda d: _del(d["edges"][0], "to_id")), ["edge #0", "to_id"]),
    ("edge-unknown-id", _explore(lambda d: _set(d["edges"][1], "to_id", 999)), ["edge #1", "999"]),
    ("edge-id-string", _explore(lambda d: _set(d["edges"][1], "from_id", "10")), ["edge #1", "'10'"]),
    ("edge-id-bool", _explore(lambda d: _set(d["edges"][1], "from_id", True)), ["edge #1", "True"]),
    ("edge-id-list", _explore(lambda d: _set(d["edges"][1], "from_id", [10])), ["edge #1", "[10]"]),
    ("relation-unknown", _explore(lambda d: _set(d["edges"][2], "relation_type", "UNDER")),
     ["edge #2", "'UNDER'"]),
    ("relation-int", _explore(lambda d: _set(d["edges"][2], "relation_type", 3)), ["edge #2", "relation"]),
    ("no-character", _explore(lambda d: _set(d, "nodes", [n for n in d["nodes"] if n["id"] != 3])
                              or _set(d, "edges", [e for e in d["edges"] if 3 not in (e["from_id"], e["to_id"])])),
     ["scene.json", "characters"]),
    ("malformed-json", _explore(text='{"nodes": [}'), ["scene.json:1:", "malformed JSON"]),
    ("nan-json", _explore(text='{"nodes": [], "x": NaN}'), ["scene.json", "NaN"]),
    ("deep-json", _explore(text='{"nodes": ' + "[" * 100_000 + "]" * 100_000 + "}"), ["scene.json", "deep"]),
    ("deep-node-field", _explore(lambda d: _set(d["nodes"][4], "extra", json.loads("[" * 900 + "]" * 900))),
     ["scene.json"]),
    ("non-utf8", _explore(text=b'{"nodes": [], "edges": [], "x": "\xff"}'), ["scene.json", "UTF-8"]),
    ("empty-file", _explore(text=""), ["scene.json", "malformed JSON"]),
    ("missing-file", lambda tmp: ["explore", "--scene", str(tmp / "nope.json")], ["nope.json", "no such"]),
    ("directory", lambda tmp: ["explore", "--scene", str(tmp)], ["is a directory", "scene file"]),
    ("device", lambda tmp: ["explore", "--scene", "/dev/null"], ["/dev/null", "not a regular file"]),
    ("too-few-characters", lambda tmp: ["explore", "--scene", "procedural:1:2", "--agents", "3"],
     ["procedural:1:2", "3 characters"]),
    ("plan-on-bad-scene", lambda tmp: ["plan", "--scene", _scene(tmp, lambda d: _set(d["edges"][1], "to_id", 999)),
                                       "--activity", "go to sleep", "--simulations", "10"], ["edge #1", "999"]),
    ("plan-no-character", lambda tmp: ["plan", "--scene", _scene(tmp, lambda d: _set(
        d, "nodes", [n for n in d["nodes"] if n["class_name"] != "character"]) or _set(
        d, "edges", [e for e in d["edges"] if 3 not in (e["from_id"], e["to_id"])])),
        "--activity", "turn on light", "--simulations", "10"], ["scene.json", "no character"]),
]

SOURCES = [
    ("procedural-negative", "procedural:-1", ["procedural:-1"]),
    ("procedural-word", "procedural:abc", ["procedural:abc", "procedural:SEED"]),
    ("procedural-no-characters", "procedural:1:0", ["procedural:1:0", "N_CHARACTERS", "16"]),
    ("procedural-many-characters", "procedural:1:99", ["procedural:1:99", "N_CHARACTERS", "16"]),
    ("procedural-three-parts", "procedural:1:2:3", ["procedural:1:2:3"]),
    ("procedural-huge", "procedural:" + "9" * 5000, ["procedural:999"]),
    ("robothow-unknown", "robothow:nope", ["RobotHow"]),
    ("path-with-colon", "nope:1", ["nope:1"]),
]

FLAGS = [
    ("explore-agents-0", ["explore", "--agents", "0"], ["agents=0", "[1, 16]"]),
    ("explore-agents-17", ["explore", "--agents", "17"], ["agents=17", "[1, 16]"]),
    ("explore-steps-0", ["explore", "--steps", "0"], ["steps=0"]),
    ("explore-steps-1e9", ["explore", "--steps", "1000000000"], ["steps=1000000000", "100000"]),
    ("explore-steps-word", ["explore", "--steps", "many"], ["--steps"]),
    ("explore-seed-negative", ["explore", "--seed", "-1"], ["seed=-1"]),
    ("explore-seed-huge", ["explore", "--seed", str(2**64)], ["seed="]),
    ("explore-unit-negative", ["explore", "--unit", "-5"], ["unit=-5"]),
    ("plan-simulations-0", ["plan", "--activity", "go to sleep", "--simulations", "0"], ["simulations=0"]),
    ("plan-simulations-huge", ["plan", "--activity", "go to sleep", "--simulations", "1000000000"],
     ["simulations=1000000000", "10000000"]),
    ("plan-max-depth-0", ["plan", "--activity", "go to sleep", "--max-depth", "0"], ["max_depth=0"]),
    ("plan-max-depth-huge", ["plan", "--activity", "go to sleep", "--max-depth", "100000"], ["max_depth=100000"]),
    ("plan-seed-negative", ["plan", "--activity", "go to sleep", "--seed", "-1"], ["seed=-1"]),
    ("plan-unit-negative", ["plan", "--activity", "go to sleep", "--unit", "-1"], ["unit=-1"]),
    ("plan-activity-unknown", ["plan", "--activity", "fly a kite"], ["'fly a kite'"]),
    ("plan-activity-unknown-with-scene", ["plan", "--scene", "procedural:0", "--activity", "fly a kite"],
     ["'fly a kite'"]),
    ("plan-no-activity", ["plan"], ["--activity"]),
    ("plan-select", ["plan", "--activity", "go to sleep", "--select", "x"], ["--select"]),
    ("plan-extra-argument", ["plan", "--activity", "go to sleep", "extra"], ["extra"]),
    ("demo-seed-negative", ["world", "demo", "--seed", "-1"], ["--seed"]),
    ("demo-seed-word", ["world", "demo", "--seed", "x"], ["--seed"]),
]


@pytest.mark.parametrize("make_argv, names", [c[1:] for c in SCENES], ids=[c[0] for c in SCENES])
def test_bad_scene_file(make_argv, names, tmp_path, cli_error):
    cli_error(make_argv(tmp_path), names)


@pytest.mark.parametrize("source, names", [c[1:] for c in SOURCES], ids=[c[0] for c in SOURCES])
@pytest.mark.parametrize("command", ["explore", "plan"])
def test_bad_scene_source(command, source, names, cli_error):
    extra = ["--activity", "go to sleep", "--simulations", "10"] if command == "plan" else ["--steps", "5"]
    cli_error([command, "--scene", source, *extra], names)


@pytest.mark.parametrize("argv, names", [c[1:] for c in FLAGS], ids=[c[0] for c in FLAGS])
def test_bad_flag(argv, names, cli_error):
    cli_error(argv, names)


def _undecodable(tmp: Path, text: str | None) -> str:
    """A scene file (absent when `text` is None) whose name is not UTF-8: b'sc\\xe9ne.json', as the argv
    string Python makes of it (os.fsdecode keeps the byte as a surrogate)."""
    path = os.path.join(os.fsencode(tmp), b"sc\xe9ne.json")
    if text is not None:
        try:
            with open(path, "w") as fh:
                fh.write(text)
        except OSError:
            pytest.skip("this file system refuses file names that are not UTF-8")
    return os.fsdecode(path)


PLAN = ["--activity", "go to sleep", "--simulations", "10"]
# (id, text of the file or None for none, what the line must name besides the file, printed as sc\xe9ne.json)
UNDECODABLE = [
    ("missing", None, "no such scene file"),
    ("malformed", '{"nodes": [}', "malformed JSON"),
    ("nan", '{"nodes": [], "x": NaN}', "NaN"),
    ("a-good-scene", json.dumps(TINY), "not valid UTF-8"),
]


@pytest.mark.parametrize("text, problem", [c[1:] for c in UNDECODABLE], ids=[c[0] for c in UNDECODABLE])
@pytest.mark.parametrize("command", [["explore", "--steps", "5", "--agents", "1"], ["plan", *PLAN]],
                         ids=["explore", "plan"])
def test_a_scene_file_name_that_is_not_utf8_is_printed_escaped(tmp_path, cli_error, command, text, problem):
    scene = _undecodable(tmp_path, text)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    cli_error([command[0], "--scene", scene, *command[1:]], ["sc\\xe9ne.json", problem])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*")} == before


def test_scene_errors_are_scene_errors_never_key_or_type_errors():
    """The library (not only the CLI) refuses malformed dicts with a SceneError naming the culprit."""
    bad = [[], {"nodes": 3}, {"nodes": [{"id": 1, "class_name": "kitchen", "states": 5}]},
           {"nodes": [{"id": 1, "class_name": "kitchen"}], "edges": [{"from_id": [1], "to_id": 1,
                                                                      "relation_type": "ON"}]},
           {"nodes": [{"id": 1, "class_name": "kitchen"}], "edges": [{"from_id": 1, "to_id": 1,
                                                                      "relation_type": None}]}]
    for d in bad:
        with pytest.raises(SceneError):
            Scene.from_dict(d)


def test_load_json_refuses_an_oversized_scene(tmp_path):
    p = tmp_path / "big.json"
    p.write_text(json.dumps(TINY) + " " * (16 << 20))
    with pytest.raises(SceneError, match="big.json: .* over the .*-byte limit"):
        load_scene(str(p))
