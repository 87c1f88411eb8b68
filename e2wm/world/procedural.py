"""Seeded procedural apartments in VirtualHome scene JSON: the default scene source.

Node ids run 1, 2, ... in this order: the rooms; per room, its furniture then its small objects;
the doors; the characters last. Characters coming last keeps the apartment itself the same for
any `n_characters`, and agent i is the i-th character.
"""
from __future__ import annotations

import random

from e2wm.errors import SceneError
from e2wm.world.catalog import (CATALOG, CLEANLINESS, EXCLUDED_BY_ON, OBJECT_CLASSES,
                                ROOM_CLASSES, STATE_PAIRS, ClassInfo, furniture_for)

ROOM_COUNTS = (4, 5, 6)
# Every apartment has these; its other rooms are drawn from the remaining room classes.
CORE_ROOMS = ("kitchen", "bathroom", "bedroom")
# What a room always holds (a class named twice stands there twice); extras come from the catalog.
ESSENTIAL_FURNITURE: dict[str, tuple[str, ...]] = {
    "kitchen": ("fridge", "stove", "sink", "faucet", "kitchen_counter", "kitchen_cabinet", "light"),
    "bathroom": ("toilet", "sink", "faucet", "bathroom_counter", "bathroom_cabinet", "light"),
    "bedroom": ("bed", "nightstand", "dresser", "closet", "light"),
    "living_room": ("couch", "coffee_table", "television", "light"),
    "dining_room": ("table", "chair", "chair", "cupboard", "light"),
    "home_office": ("desk", "chair", "computer", "bookshelf", "light"),
    "kids_bedroom": ("bed", "dresser", "desk", "chair", "carpet", "light"),
    "entrance_hall": ("shoe_rack", "closet", "bench", "light"),
}
EXTRA_FURNITURE = (2, 5)    # how many extra pieces of furniture a room gets, inclusive range
OBJECTS_PER_ROOM = (4, 9)   # how many small objects a room gets, inclusive range


def generate_apartment(seed: int, *, n_characters: int = 1, n_rooms: int | None = None) -> dict:
    """A furnished apartment of 4-6 rooms joined by doors; same arguments, same scene."""
    _check_arguments(seed, n_characters, n_rooms)
    rng = random.Random(seed)
    scene = _SceneBuilder(rng)
    rooms = _choose_rooms(rng, n_rooms if n_rooms is not None else rng.choice(ROOM_COUNTS))
    room_ids = {room: scene.add_node(room) for room in rooms}
    for room in rooms:
        _furnish(scene, room, room_ids[room])
    for first, second in _door_pairs(rng, rooms):
        door = scene.add_node("door")
        scene.add_edge(door, "INSIDE", room_ids[first])
        scene.add_edge(door, "BETWEEN", room_ids[first])
        scene.add_edge(door, "BETWEEN", room_ids[second])
    for _ in range(n_characters):
        character = scene.add_node("character")
        scene.add_edge(character, "INSIDE", room_ids[rng.choice(rooms)])
    return {"nodes": scene.nodes, "edges": scene.edges}


def _check_arguments(seed, n_characters, n_rooms) -> None:
    # Negative seeds are refused because random.Random(-s) and random.Random(s) are the same stream.
    if not _is_int(seed) or seed < 0:
        raise SceneError(f"generate_apartment: seed must be an int >= 0, got {seed!r}")
    if not _is_int(n_characters) or n_characters < 1:
        raise SceneError(f"generate_apartment: n_characters must be an int >= 1, "
                         f"got {n_characters!r}")
    if n_rooms is not None and (not _is_int(n_rooms) or n_rooms not in ROOM_COUNTS):
        raise SceneError(f"generate_apartment: n_rooms must be None or an int from "
                         f"{ROOM_COUNTS[0]} to {ROOM_COUNTS[-1]}, got {n_rooms!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _SceneBuilder:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.nodes: list[dict] = []
        self.edges: list[dict] = []

    def add_node(self, class_name: str) -> int:
        info = CATALOG[class_name]
        node_id = len(self.nodes) + 1
        self.nodes.append({
            "id": node_id, "class_name": class_name, "category": info.category,
            "properties": sorted(info.properties), "states": _initial_states(info, self.rng),
            "prefab_name": None, "bounding_box": None,
        })
        return node_id

    def add_edge(self, from_id: int, relation: str, to_id: int) -> None:
        self.edges.append({"from_id": from_id, "relation_type": relation, "to_id": to_id})


def _initial_states(info: ClassInfo, rng: random.Random) -> list[str]:
    """One state of each pair the class's properties call for, plus CLEAN or DIRTY if it has one."""
    states: list[str] = []
    for prop, pair in STATE_PAIRS.items():
        if prop in info.properties:
            options = [s for s in pair if s in info.states]
            if "ON" in states:
                options = [s for s in options if s not in EXCLUDED_BY_ON]
            states.append(rng.choice(options))
    cleanliness = [s for s in CLEANLINESS if s in info.states]
    if cleanliness:
        states.append(rng.choice(cleanliness))
    return states


def _choose_rooms(rng: random.Random, n_rooms: int) -> list[str]:
    others = [room for room in ROOM_CLASSES if room not in CORE_ROOMS]
    rooms = list(CORE_ROOMS) + rng.sample(others, n_rooms - len(CORE_ROOMS))
    rng.shuffle(rooms)
    return rooms


def _door_pairs(rng: random.Random, rooms: list[str]) -> list[tuple[str, str]]:
    """A random spanning tree over the rooms: each room opens onto one room listed before it."""
    return [(rooms[rng.randrange(i)], rooms[i]) for i in range(1, len(rooms))]


def _furnish(scene: _SceneBuilder, room: str, room_id: int) -> None:
    rng = scene.rng
    essentials = ESSENTIAL_FURNITURE[room]
    pool = [name for name in furniture_for(room) if name not in essentials]
    extras = rng.sample(pool, min(rng.randint(*EXTRA_FURNITURE), len(pool)))
    furniture: dict[str, list[int]] = {}
    for name in list(essentials) + extras:
        node_id = scene.add_node(name)
        scene.add_edge(node_id, "INSIDE", room_id)
        furniture.setdefault(name, []).append(node_id)
    _face_screens(scene, furniture)
    _place_objects(scene, room_id, furniture)


def _face_screens(scene: _SceneBuilder, furniture: dict[str, list[int]]) -> None:
    """Seats face the room's screens, as VirtualHome's couches face its televisions."""
    def having(prop: str) -> list[int]:
        return [i for name, ids in furniture.items() if prop in CATALOG[name].properties
                for i in ids]
    for seat in having("SITTABLE"):
        for screen in having("LOOKABLE"):
            scene.add_edge(seat, "FACING", screen)


def _place_objects(scene: _SceneBuilder, room_id: int, furniture: dict[str, list[int]]) -> None:
    """Small objects ON or INSIDE this room's furniture, where the catalog allows them."""
    rng = scene.rng
    spots = {name: [p for p in CATALOG[name].placements if p[1] in furniture]
             for name in OBJECT_CLASSES}
    candidates = [name for name in OBJECT_CLASSES if spots[name]]
    for name in rng.sample(candidates, min(rng.randint(*OBJECTS_PER_ROOM), len(candidates))):
        relation, holder_class = rng.choice(spots[name])
        holder = rng.choice(furniture[holder_class])
        node_id = scene.add_node(name)
        scene.add_edge(node_id, "INSIDE", room_id)
        scene.add_edge(node_id, relation, holder)
        scene.add_edge(node_id, "CLOSE", holder)
        scene.add_edge(holder, "CLOSE", node_id)
