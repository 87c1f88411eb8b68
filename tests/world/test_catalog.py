"""The class catalog: vocabulary, internal consistency, and agreement with VirtualHome's own data."""
import importlib.resources
import json

import pytest

from e2wm.world import vocab
from e2wm.world.catalog import (CATALOG, EXCLUDED_BY_ON, FURNITURE_CLASSES, OBJECT_CLASSES,
                                ROOM_CLASSES, STATE_PAIRS, furniture_for)

# Catalog classes whose property set differs from VirtualHome's properties_data.json, with why.
# Empty: every class carries VirtualHome's exact set. Add `class: reason` before deviating.
PROPERTY_DEVIATIONS: dict[str, str] = {}

# (class, relation, furniture) placements absent from object_script_placing.json, with why.
PLACEMENT_DEVIATIONS: dict[tuple[str, str, str], str] = {
    ("remote_control", "ON", "couch"):
        "the file lists sofa and love_seat; class_name_equivalence.json names couch as sofa",
}


def _vh_resource(name: str):
    pytest.importorskip("virtualhome_eval")
    path = importlib.resources.files("virtualhome_eval") / "resources" / name
    return json.loads(path.read_text())


def test_catalog_size_and_partition():
    assert 80 <= len(CATALOG) <= 130
    groups = [set(ROOM_CLASSES), set(FURNITURE_CLASSES), set(OBJECT_CLASSES), {"character", "door"}]
    assert sum(len(g) for g in groups) == len(CATALOG)
    assert set().union(*groups) == set(CATALOG)


def test_names_come_from_the_vocabulary():
    assert set(ROOM_CLASSES) == set(vocab.ROOM_NAMES)
    for info in CATALOG.values():
        assert info.properties <= set(vocab.PROPERTIES), info.name
        assert set(info.states) <= set(vocab.STATES), info.name
        assert {relation for relation, _ in info.placements} <= {"ON", "INSIDE"}, info.name


def test_categories():
    for name in ROOM_CLASSES:
        assert CATALOG[name].category == "Rooms" and not CATALOG[name].properties
    assert CATALOG["character"].category == "Characters" and not CATALOG["character"].properties
    assert CATALOG["door"].category == "Doors" and CATALOG["door"].properties == {"CAN_OPEN"}
    assert all(CATALOG[name].category == "placable_objects" for name in OBJECT_CLASSES)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_state_options_match_properties(name):
    info = CATALOG[name]
    for prop, pair in STATE_PAIRS.items():
        offered = [s for s in pair if s in info.states]
        if prop in info.properties:
            assert offered, f"{name} has {prop} but no initial {pair} option"
        else:
            assert not offered, f"{name} offers {offered} without {prop}"
    if "ON" in info.states:
        # A node that starts ON needs a closed / plugged-in option to be consistent with it.
        for prop, pair in STATE_PAIRS.items():
            if prop in info.properties and prop != "HAS_SWITCH":
                assert [s for s in pair if s in info.states and s not in EXCLUDED_BY_ON], name


def test_furniture_stands_in_rooms_and_objects_go_on_furniture():
    for name in FURNITURE_CLASSES:
        assert set(CATALOG[name].rooms) <= set(ROOM_CLASSES), name
        assert not CATALOG[name].placements, name
    for name in OBJECT_CLASSES:
        info = CATALOG[name]
        assert "GRABBABLE" in info.properties and not info.rooms, name
        assert len(set(info.placements)) == len(info.placements), f"{name} repeats a placement"
        for relation, holder in info.placements:
            assert holder in FURNITURE_CLASSES, (name, holder)
            needed = "SURFACES" if relation == "ON" else "CONTAINERS"
            assert needed in CATALOG[holder].properties, (name, relation, holder)


def test_every_room_has_furniture_and_every_furniture_a_room():
    assert all(furniture_for(room) for room in ROOM_CLASSES)
    assert all(CATALOG[name].rooms for name in FURNITURE_CLASSES)


@pytest.mark.virtualhome
def test_properties_match_virtualhome():
    vh_properties = _vh_resource("properties_data.json")
    checked = 0
    for name, info in CATALOG.items():
        if name in vh_properties and name not in PROPERTY_DEVIATIONS:
            assert info.properties == set(vh_properties[name]), name
            checked += 1
    # Everything but rooms and the character is a VirtualHome class with known properties.
    assert checked == len(CATALOG) - len(ROOM_CLASSES) - 1 - len(PROPERTY_DEVIATIONS)


@pytest.mark.virtualhome
def test_placements_match_virtualhome():
    vh_placing = _vh_resource("object_script_placing.json")
    vh_relation = {"ON": "ON", "INSIDE": "IN"}   # the placing file spells INSIDE as IN
    unknown = []
    for name in OBJECT_CLASSES:
        if name not in vh_placing:
            continue
        allowed = {(p["relation"], p["destination"]) for p in vh_placing[name]}
        for relation, holder in CATALOG[name].placements:
            if ((vh_relation[relation], holder) not in allowed
                    and (name, relation, holder) not in PLACEMENT_DEVIATIONS):
                unknown.append((name, relation, holder))
    assert not unknown, f"placements VirtualHome does not list: {unknown}"
