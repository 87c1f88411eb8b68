"""Scene graphs: lossless load/save, consistent edge indexes, one-line errors on bad input."""
import copy
import json
import random

import pytest

from e2wm.errors import E2WMError, SceneError
from e2wm.world import World
from e2wm.world.graph import Scene
from e2wm.world.scenes import load_json, load_scene
from e2wm.world.vocab import RELATIONS, REL

N_REL = len(RELATIONS)


def _edge_set(d):
    return {(e["from_id"], e["relation_type"], e["to_id"]) for e in d["edges"]}


def _assert_round_trip(scene: dict):
    before = copy.deepcopy(scene)
    w = World.from_dict(scene)
    out = w.to_dict()
    assert scene == before, "loading must not modify the input"
    assert out["nodes"] == scene["nodes"]          # every field, in order, extra fields included
    assert _edge_set(out) == _edge_set(scene)
    assert len(out["edges"]) == len(_edge_set(scene))   # duplicates collapse, nothing is added
    # saving a fresh world is stable
    assert World.from_dict(out).to_dict() == out
    return w


def _assert_indexes_agree(w: World):
    fwd = {(a, r, b) for a in w.scene.ids for r in range(N_REL) for b in w.out(a, r)}
    rev = {(a, r, b) for b in w.scene.ids for r in range(N_REL) for a in w.inn(b, r)}
    assert fwd == rev
    assert fwd == set(w.edges())
    for a, r, b in fwd:
        assert w.has_edge(a, r, b)
    # and to_dict shows exactly these edges
    assert _edge_set(w.to_dict()) == {(a, RELATIONS[r], b) for a, r, b in fwd}


def test_tiny_scene_round_trips(tiny_scene):
    w = _assert_round_trip(tiny_scene)
    tv = next(n for n in w.to_dict()["nodes"] if n["class_name"] == "tv")
    assert tv["obj_transform"]["scale"] == [1.0, 1.0, 1.0]
    assert tv["bounding_box"] == {"center": [5.0, 1.2, 1.8], "size": [1.2, 0.7, 0.1]}
    assert tv["prefab_name"] == "PRE_ELE_TV_01"
    assert w.scene.rooms == {1, 2}
    assert w.agents == (3,)
    _assert_indexes_agree(w)


@pytest.mark.virtualhome
def test_robothow_init_graph_round_trips(robothow_init):
    w = _assert_round_trip(robothow_init)
    assert len(w.scene.ids) == len(robothow_init["nodes"])
    _assert_indexes_agree(w)


def test_duplicate_edges_collapse(tiny_scene):
    tiny_scene["edges"].append(dict(tiny_scene["edges"][0]))
    out = World.from_dict(tiny_scene).to_dict()
    assert len(out["edges"]) == len(tiny_scene["edges"]) - 1
    assert _edge_set(out) == _edge_set(tiny_scene)


def test_relation_and_state_names_are_case_insensitive(tiny_scene):
    tiny_scene["edges"][0]["relation_type"] = "inside"
    tiny_scene["nodes"][3]["states"] = ["closed", "off"]
    w = World.from_dict(tiny_scene)
    e = tiny_scene["edges"][0]
    assert w.has_edge(e["from_id"], REL["INSIDE"], e["to_id"])
    assert w.to_dict()["nodes"][3]["states"] == ["closed", "off"]   # unchanged nodes kept as given


def _random_steps(w: World, n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        agent = rng.randrange(len(w.agents))
        legal = w.legal_actions(agent)
        w.step(legal[rng.randrange(len(legal))], agent)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indexes_agree_and_save_reloads_after_steps(tiny_two, seed):
    w = World.from_dict(tiny_two)
    _random_steps(w, 60, seed)
    _assert_indexes_agree(w)
    saved = w.to_dict()
    w2 = World.from_dict(saved)
    assert set(w2.edges()) == set(w.edges())
    assert {i: w2.states(i) for i in w2.scene.ids} == {i: w.states(i) for i in w.scene.ids}
    # nodes keep every non-state field
    for a, b in zip(saved["nodes"], tiny_two["nodes"]):
        assert {k: v for k, v in a.items() if k != "states"} == \
               {k: v for k, v in b.items() if k != "states"}


@pytest.mark.virtualhome
def test_robothow_indexes_agree_after_steps(robothow_init):
    w = World.from_dict(robothow_init)
    _random_steps(w, 40, 7)
    _assert_indexes_agree(w)


def test_changed_states_are_saved(tiny_scene):
    w = World.from_dict(tiny_scene)
    for line in ["[Walk] <fridge> (10)", "[Open] <fridge> (10)"]:
        assert w.step(line).ok
    fridge = next(n for n in w.to_dict()["nodes"] if n["id"] == 10)
    assert set(fridge["states"]) == {"OPEN", "OFF", "PLUGGED_IN"}
    assert w.step("[Close] <fridge> (10)").ok
    fridge = next(n for n in w.to_dict()["nodes"] if n["id"] == 10)
    assert set(fridge["states"]) == {"CLOSED", "OFF", "PLUGGED_IN"}


# ---- bad input ---------------------------------------------------------------------------------
def _node(tiny, i):
    return next(n for n in tiny["nodes"] if n["id"] == i)


def _expect(scene, *parts):
    with pytest.raises(SceneError) as ei:
        World.from_dict(scene, where="tiny.json")
    msg = str(ei.value)
    assert msg.startswith("tiny.json")
    assert "\n" not in msg
    for p in parts:
        assert p in msg, (p, msg)
    return msg


def test_missing_id(tiny_scene):
    del tiny_scene["nodes"][5]["id"]
    _expect(tiny_scene, "node #5", "id")


def test_non_integer_id(tiny_scene):
    tiny_scene["nodes"][4]["id"] = "11"
    _expect(tiny_scene, "node #4", "'11'")


def test_duplicate_id(tiny_scene):
    tiny_scene["nodes"][6]["id"] = tiny_scene["nodes"][2]["id"]
    _expect(tiny_scene, "node #6", str(tiny_scene["nodes"][2]["id"]))


def test_missing_class_name(tiny_scene):
    del _node(tiny_scene, 12)["class_name"]
    _expect(tiny_scene, "node 12", "class_name")


def test_dangling_edge(tiny_scene):
    tiny_scene["edges"].insert(7, {"from_id": 12, "relation_type": "ON", "to_id": 777})
    _expect(tiny_scene, "edge #7", "777")


def test_unknown_relation(tiny_scene):
    tiny_scene["edges"][3]["relation_type"] = "UNDER"
    _expect(tiny_scene, "edge #3", "UNDER")


def test_edge_missing_a_field(tiny_scene):
    del tiny_scene["edges"][2]["to_id"]
    _expect(tiny_scene, "edge #2", "to_id")


def test_unknown_state(tiny_scene):
    _node(tiny_scene, 10)["states"].append("FROZEN")
    _expect(tiny_scene, "node 10", "fridge", "FROZEN")


def test_unknown_property(tiny_scene):
    _node(tiny_scene, 12)["properties"].append("FLYING")
    _expect(tiny_scene, "node 12", "mug", "FLYING")


def test_states_not_a_list(tiny_scene):
    _node(tiny_scene, 12)["states"] = "CLEAN"
    _expect(tiny_scene, "node 12", "mug", "state")


@pytest.mark.parametrize("bad", [
    {"nodes": {"1": {}}, "edges": []},
    {"edges": []},
    [],
    {"nodes": [], "edges": {}},
])
def test_malformed_top_level(bad):
    _expect(bad)


def test_unhashable_edge_end(tiny_scene):
    tiny_scene["edges"].append({"from_id": [12], "relation_type": "ON", "to_id": 11})
    _expect(tiny_scene, "edge #")


def test_scene_errors_are_e2wm_errors():
    assert issubclass(SceneError, E2WMError)
    with pytest.raises(E2WMError):
        Scene.from_dict({"nodes": [{"id": 1}]})


# ---- files ---------------------------------------------------------------------------------------
def test_load_json_reads_a_scene(tmp_path, tiny_scene):
    p = tmp_path / "scene.json"
    p.write_text(json.dumps(tiny_scene))
    assert load_json(p) == tiny_scene
    assert load_scene(str(p)) == tiny_scene


def test_load_json_missing_file(tmp_path):
    p = tmp_path / "nope" / "scene.json"
    with pytest.raises(SceneError, match="no such scene file") as ei:
        load_json(p)
    assert str(p) in str(ei.value)


def test_load_json_malformed(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"nodes": [\n  {"id": 1,, "x": 2}\n]}\n')
    with pytest.raises(SceneError) as ei:
        load_json(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:2:12:")
    assert "malformed JSON" in msg


def test_load_json_on_a_directory(tmp_path):
    with pytest.raises(SceneError, match=str(tmp_path)):
        load_json(tmp_path)


def test_editing_to_dict_output_or_the_input_does_not_change_the_world(tiny_scene):
    w = World.from_dict(tiny_scene)
    before = w.to_dict()
    out = w.to_dict()
    out["nodes"][3]["states"].append("DIRTY")
    out["nodes"][3]["properties"].append("CREAM")
    tiny_scene["nodes"][3]["states"].append("OPEN")
    assert w.to_dict() == before
