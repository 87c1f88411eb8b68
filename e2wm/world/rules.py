"""Preconditions and effects of every action, as the official evolving-graph executor defines them.

Each action is a pair `(check, apply)`: `check(w, c, *ids)` returns None when the action may run,
else the reason; `apply(w, c, *ids)` performs it and is only called after a passing check, so a
failed step changes nothing. `c` is the acting character's node id. Deliberate differences from
the official executor are marked FIX; the README's "Deliberate differences" table lists them.
"""
from __future__ import annotations

from functools import partial

from e2wm.world.vocab import (BODY_PART, CAN_OPEN, CLEAN, CLOSED, CLOTHES, DIRTY, DRINKABLE,
                              EATABLE, CUTTABLE, GRABBABLE, HAS_PLUG, HAS_SWITCH, LIEABLE,
                              LOOKABLE, LYING, MOVABLE, OFF, ON_, OPEN, PERSON, PLUGGED_IN,
                              PLUGGED_OUT, POURABLE, R_CLOSE, R_FACING, R_HOLDS_LH, R_HOLDS_RH,
                              R_INSIDE, R_ON, READABLE, RECIPIENT, SITTABLE, SITTING)

_SIT_MAX = {"couch": 4, "bed": 4, "chair": 1, "loveseat": 2, "sofa": 4, "toilet": 1,
            "pianobench": 2, "bench": 2}
_LIE_MAX = {"couch": 2, "bathtub": 2, "bed": 3, "loveseat": 2, "sofa": 2, "bench": 1}
_SQUEEZABLE = frozenset({"cleaning_solution", "tooth_paste", "shampoo", "food_peanut_butter",
                         "dish_soap", "soap", "towel", "rag", "paper", "sponge", "food_lemon",
                         "check"})
_HANDS = (R_HOLDS_RH, R_HOLDS_LH)
_RESTING = SITTING | LYING


def _n(w, i):
    return w.scene.node_label(i)


def _not_close(w, c, n):
    return None if w.close_to(c, n) else f"{_n(w, c)} is not close to {_n(w, n)}"


def _usable(w, c, n, ok, why):
    """Why `c` may not act on `n`: "<n> <why>" when not `ok`, else `_not_close`."""
    return _not_close(w, c, n) if ok else f"{_n(w, n)} {why}"


def _ok(w, c, *ids):
    return None


def _nothing(w, c, *ids):
    pass


def _sets(old, new):
    """The effect that turns the object's states `old` into `new`."""
    return lambda w, c, n: w._set_states(n, old, new)


def _has(flags):
    """Whether a node has any of the property `flags`."""
    return lambda sc, n: bool(sc.props[n] & flags)


def _grabbable(sc, n):
    return bool(sc.props[n] & GRABBABLE) or sc.class_name[n] in ("water", "child")


def _openable(sc, n):
    return bool(sc.props[n] & CAN_OPEN) or sc.class_name[n] in ("desk", "window")


def _movable(sc, n):
    return bool(sc.props[n] & MOVABLE) or sc.class_name[n] in ("button", "chair", "curtain")


# ---- Walk / Run / Find ------------------------------------------------------------------------
def check_walk(w, c, n):
    if w.states(c) & _RESTING:
        return f"{_n(w, c)} is sitting or lying"
    if (m := _no_room(w, c)):
        return m
    if w.room_of(n) is None:
        return f"{_n(w, n)} is in no room"
    return None


def apply_walk(w, c, n):
    rooms, room = w.scene.rooms, w.room_of(n)
    held = w.held(c)
    w._del_all(c, (R_INSIDE, R_CLOSE, R_FACING))
    w._add(c, R_INSIDE, room)
    if room != n:
        for x in w._out(n, R_INSIDE):
            if x not in rooms:
                w._add_both(c, R_CLOSE, x)
        for b in w.scene.body_parts:
            w._add_both(c, R_CLOSE, b)
        w._add_both(c, R_CLOSE, n)
    for h in held:
        w._del_all(h, (R_INSIDE, R_CLOSE, R_FACING))
    for h in held:
        w._add_both(c, R_CLOSE, h)
        w._add(h, R_INSIDE, room)   # FIX: the official puts it in the room the character left
    if w.scene.props[n] & CAN_OPEN:
        for x in w._inn(n, R_INSIDE):
            w._add_both(c, R_CLOSE, x)
    for x in w._out(n, R_ON):
        w._add_both(c, R_CLOSE, x)


def _find_only(w, c, n):
    return _not_close(w, c, n)


def check_find(w, c, n):
    if c in w._out(n, R_ON) or w.scene.props[n] & BODY_PART or w.close_to(c, n):
        return _find_only(w, c, n)
    return check_walk(w, c, n)   # far away: Find walks there


def apply_find(w, c, n):
    if c in w._out(n, R_ON) or w.scene.props[n] & BODY_PART or w.close_to(c, n):
        _drop_facing(w, c)
        w._add_both(c, R_CLOSE, n)
    else:
        apply_walk(w, c, n)


def _drop_facing(w, c):
    for x in tuple(w._out(c, R_FACING)):
        w._del(c, R_FACING, x)


# ---- Sit / Lie / StandUp / Sleep / WakeUp -----------------------------------------------------
# state -> (the character's word, the property the node needs, its word, how many fit by class)
_REST = {SITTING: ("sitting", SITTABLE, "sittable", _SIT_MAX), LYING: ("lying", LIEABLE, "lieable", _LIE_MAX)}


def _check_rest(w, c, n, state):
    word, prop, able, most = _REST[state]
    if (m := _not_close(w, c, n)):
        return m
    if w.states(c) & state:
        return f"{_n(w, c)} is {word}"
    if not w.scene.props[n] & prop:
        return f"{_n(w, n)} is not {able}"
    if len(w._inn(n, R_ON)) >= most.get(w.scene.class_name[n], 1):
        return f"Too many things on {_n(w, n)}"
    return None


def apply_sit(w, c, n):
    w._add(c, R_ON, n)
    for x in tuple(w._out(n, R_FACING)):
        w._add(c, R_FACING, x)
    w._set_states(c, LYING, SITTING)


def apply_lie(w, c, n):
    w._add(c, R_ON, n)
    w._set_states(c, SITTING, LYING)


def check_resting(w, c):
    return None if w.states(c) & _RESTING else f"{_n(w, c)} is not sitting or lying"


def apply_standup(w, c):
    w._set_states(c, _RESTING, 0)


# ---- Grab / Drop / Put ------------------------------------------------------------------------
def check_grab(w, c, n):
    if not _grabbable(w.scene, n):
        return f"{_n(w, n)} is not grabbable"
    if w.grab_source(n) is not None:
        return f"{_n(w, n)} already grabbed"
    if (m := _not_close(w, c, n)):
        return m
    if w.inside_closed(n):
        return f"{_n(w, n)} is inside other closed thing"
    if w.free_hand(c) is None:
        return f"{_n(w, c)} does not have a free hand"
    return _no_room(w, c)


def _no_room(w, c):
    # FIX: the official executor raises when the character is in no room
    return None if w.room_of(c) is not None else f"{_n(w, c)} is in no room"


def _grab_support(w, n):
    """What the object rests on, is in, or else is close to (not a room); lowest id first."""
    rooms = w.scene.rooms
    for r in (R_ON, R_INSIDE, R_CLOSE):
        cands = [x for x in w._out(n, r) if x not in rooms]
        if cands:   # FIX (tie-break only): the official takes Python set order here
            return min(cands), r
    return None


def apply_grab(w, c, n):
    room, hand, support = w.room_of(c), w.free_hand(c), _grab_support(w, n)
    w._del_all(n, (R_ON, R_INSIDE, R_CLOSE, R_HOLDS_LH, R_HOLDS_RH))
    w._add_both(c, R_CLOSE, n)
    w._add(c, hand, n)
    w._add(n, R_INSIDE, room)
    if support is not None:
        w._add_both(c, R_CLOSE, support[0])
        w._grab[n] = support


def check_holding(w, c, n):
    return None if w.holds(c, n) else f"{_n(w, c)} is not holding {_n(w, n)}"


def check_drop(w, c, n):
    return check_holding(w, c, n) or _no_room(w, c)


def apply_drop(w, c, n):
    room = w.room_of(c)
    for h in _HANDS:
        w._del(c, h, n)
    w._add(n, R_INSIDE, room)
    w._grab.pop(n, None)


def _check_put(w, c, src, dest, rel):
    if not w.holds(c, src):
        return f"{_n(w, c)} is not holding {_n(w, src)}"
    if (m := _not_close(w, c, dest)):
        return m
    if rel == R_INSIDE and w.scene.props[dest] & CAN_OPEN and not w.states(dest) & OPEN:
        return f"{_n(w, dest)} is not open or is not openable"
    return None


def _apply_put(w, c, src, dest, rel):
    for h in _HANDS:
        w._del(c, h, src)
    w._add_both(c, R_CLOSE, dest)
    w._add_both(src, R_CLOSE, dest)
    w._add(src, rel, dest)
    w._grab.pop(src, None)
    room = w.room_of(dest)
    if room is not None:   # FIX: the put object is in the destination's room, and only there
        rooms = w.scene.rooms
        for x in tuple(w._out(src, R_INSIDE)):
            if x in rooms and x != room:
                w._del(src, R_INSIDE, x)
        w._add(src, R_INSIDE, room)


def check_putobjback(w, c, n):
    src = w.grab_source(n)
    if src is None:
        return f"{_n(w, n)} not grabbed"
    return _check_put(w, c, n, src[0], src[1])   # FIX: the official verdict is inverted


def apply_putobjback(w, c, n):
    dest, rel = w.grab_source(n)
    _apply_put(w, c, n, dest, rel)


def check_pour(w, c, src, dest):
    p = w.scene.props
    if not p[src] & (POURABLE | DRINKABLE):
        return f"{_n(w, src)} is not pourable or drinkable"
    if not p[dest] & RECIPIENT and w.scene.class_name[dest] not in ("hands_both", "sponge", "face"):
        return f"{_n(w, dest)} is not recipient"
    if not w.holds(c, src):
        return f"{_n(w, c)} is not holding {_n(w, src)}"
    return _not_close(w, c, dest)


def apply_pour(w, c, src, dest):
    # FIX: only poured water leaves the hand and goes INSIDE the recipient; the official also puts
    # a held bottle INSIDE the cup while the hand still holds it.
    if w.scene.class_name[src] == "water":
        w._add(src, R_INSIDE, dest)
        for h in _HANDS:
            w._del(c, h, src)


# ---- Open / Close / Switch / Plug -------------------------------------------------------------
def check_open(w, c, n):
    if (m := _usable(w, c, n, _openable(w.scene, n), "can not be opened")):
        return m
    if w.free_hand(c) is None:
        return f"{_n(w, c)} does not have a free hand"
    if not w.states(n) & CLOSED:
        return f"{_n(w, n)} is not closed"
    return f"{_n(w, n)} is still on" if w.states(n) & ON_ else None


def check_close(w, c, n):
    if (m := _usable(w, c, n, _openable(w.scene, n), "can not be opened")):
        return m
    return None if w.states(n) & OPEN else f"{_n(w, n)} is not open"


def check_switchon(w, c, n):
    if (m := _usable(w, c, n, w.scene.props[n] & HAS_SWITCH, "does not have a switch")):
        return m
    if not w.states(n) & OFF:
        return f"{_n(w, n)} is not off"
    return f"{_n(w, n)} is unplugged" if w.states(n) & PLUGGED_OUT else None


def check_switchoff(w, c, n):
    if (m := _usable(w, c, n, w.scene.props[n] & HAS_SWITCH, "does not have a switch")):
        return m
    return None if w.states(n) & ON_ else f"{_n(w, n)} is not on"


def _check_plug(w, c, n, need):
    if (m := _usable(w, c, n, w.scene.props[n] & HAS_PLUG, "does not have a plug")):
        return m
    if w.free_hand(c) is None:
        return f"{_n(w, c)} does not have a free hand"
    return None if w.states(n) & need else f"{_n(w, n)} is not {'plugged out' if need == PLUGGED_OUT else 'plugged in'}"


# ---- Clothes ----------------------------------------------------------------------------------
def check_puton(w, c, n):
    if not w.holds(c, n):
        return f"{_n(w, c)} is not holding {_n(w, n)}"
    return None if w.scene.props[n] & CLOTHES else f"{_n(w, n)} is not clothes"


def apply_puton(w, c, n):
    w._add(n, R_ON, c)
    for h in _HANDS:
        w._del(c, h, n)


def check_putoff(w, c, n):
    if c not in w._out(n, R_ON):
        return f"{_n(w, n)} is not on {_n(w, c)}"
    return None if w.scene.props[n] & CLOTHES else f"{_n(w, n)} is not clothes"


def apply_putoff(w, c, n):
    w._del(n, R_ON, c)


# ---- Looking ----------------------------------------------------------------------------------
def apply_turnto(w, c, n):
    _drop_facing(w, c)
    w._add(c, R_FACING, n)


def check_lookat(w, c, n):
    return None if w.facing(c, n) else f"{_n(w, c)} does not face {_n(w, n)}"


def check_watch(w, c, n):
    if not w.scene.props[n] & LOOKABLE:
        return f"{_n(w, n)} not lookable"
    room, char_room = w.room_of(n), w.room_of(c)
    if room is None or room != char_room:   # FIX: the official crashes when a room is missing
        return f"{_n(w, c)} is not in the room of {_n(w, n)}"
    if not w.facing(c, n):
        return f"{_n(w, c)} does not face {_n(w, n)}"
    if (w.scene.class_name[n] != "computer" and w.states(c) & _RESTING
            and n not in w._out(c, R_FACING)):
        return f"{_n(w, c)} is not facing {_n(w, n)} while sitting"
    if w.inside_closed(n):
        return f"{_n(w, n)} is inside other closed thing"
    return None


# ---- Actions with a check and no effect -------------------------------------------------------
def check_greet(w, c, n):
    return None if w.scene.props[n] & PERSON else f"{_n(w, n)} is not person"


def check_drink(w, c, n):
    if not w.scene.props[n] & (DRINKABLE | RECIPIENT):
        return f"{_n(w, n)} is not drinkable or not recipient"
    return check_holding(w, c, n)


def check_read(w, c, n):
    if not w.scene.props[n] & READABLE:
        return f"{_n(w, n)} is not readable"
    return check_holding(w, c, n)


def check_touch(w, c, n):
    if (m := _not_close(w, c, n)):
        return m
    return f"{_n(w, n)} is inside other closed thing" if w.inside_closed(n) else None


def check_type(w, c, n):
    if (m := _not_close(w, c, n)):
        return m
    if w.scene.class_name[n] == "keyboard" or w.scene.props[n] & HAS_SWITCH:
        return None
    return f"{_n(w, n)} does not have switch"


def _check_move(w, c, n, push):
    if (m := _usable(w, c, n, push or _movable(w.scene, n), "is not movable")):
        return m
    if w.inside_closed(n):
        return f"{_n(w, n)} is inside other closed thing"
    return None if w.free_hand(c) is not None else f"{_n(w, c)} does not have a free hand"


def check_squeeze(w, c, n):
    if w.free_hand(c) is None:
        return f"{_n(w, c)} does not have a free hand"
    if (m := _not_close(w, c, n)):
        return m
    if w.scene.props[n] & CLOTHES or w.scene.class_name[n] in _SQUEEZABLE:
        return None
    return f"{_n(w, n)} is not clothes"


def check_cut(w, c, n):
    if w.free_hand(c) is None:
        return f"{_n(w, c)} does not have a free hand"
    if (m := _not_close(w, c, n)):
        return m
    p = w.scene.props[n]
    if not p & EATABLE:
        return f"{_n(w, n)} is not eatable"
    if not p & CUTTABLE:
        return f"{_n(w, n)} is not cuttable"
    if not any("knife" in w.scene.class_name[h] for h in w.held(c)):
        return f"{_n(w, c)} is not holding a knife"
    return None


def check_eat(w, c, n):
    if (m := _not_close(w, c, n)):
        return m
    p = w.scene.props
    if p[n] & EATABLE or any(p[x] & EATABLE for x in w._inn(n, R_ON)):
        return None
    return f"{_n(w, n)} is not eatable"


# ---- Cleaning ---------------------------------------------------------------------------------
def check_wipe(w, c, n):
    if (m := _not_close(w, c, n)):
        return m
    return None if w.held(c) else f"{_n(w, c)} does not hold anything in hands"


apply_clean = _sets(DIRTY, CLEAN)


RULES = {
    "WALK": (check_walk, apply_walk), "RUN": (check_walk, apply_walk),
    "FIND": (check_find, apply_find),
    "SIT": (partial(_check_rest, state=SITTING), apply_sit),
    "LIE": (partial(_check_rest, state=LYING), apply_lie),
    "STANDUP": (check_resting, apply_standup),
    "SLEEP": (check_resting, _nothing), "WAKEUP": (check_resting, _nothing),
    "GRAB": (check_grab, apply_grab),
    "DROP": (check_drop, apply_drop), "RELEASE": (check_drop, apply_drop),
    "PUTBACK": (partial(_check_put, rel=R_ON), partial(_apply_put, rel=R_ON)),
    "PUTIN": (partial(_check_put, rel=R_INSIDE), partial(_apply_put, rel=R_INSIDE)),
    "PUTOBJBACK": (check_putobjback, apply_putobjback),
    "POUR": (check_pour, apply_pour),
    "OPEN": (check_open, _sets(CLOSED, OPEN)), "CLOSE": (check_close, _sets(OPEN, CLOSED)),
    "SWITCHON": (check_switchon, _sets(OFF, ON_)), "SWITCHOFF": (check_switchoff, _sets(ON_, OFF)),
    "PLUGIN": (partial(_check_plug, need=PLUGGED_OUT), _sets(PLUGGED_OUT, PLUGGED_IN)),
    "PLUGOUT": (partial(_check_plug, need=PLUGGED_IN), _sets(PLUGGED_IN, PLUGGED_OUT)),
    "PUTON": (check_puton, apply_puton), "PUTOFF": (check_putoff, apply_putoff),
    "TURNTO": (_ok, apply_turnto),
    "LOOKAT": (check_lookat, _nothing), "POINTAT": (check_lookat, _nothing),
    "WATCH": (check_watch, _nothing),
    "GREET": (check_greet, _nothing), "DRINK": (check_drink, _nothing),
    "READ": (check_read, _nothing), "TOUCH": (check_touch, _nothing),
    "TYPE": (check_type, _nothing),
    "PUSH": (partial(_check_move, push=True), _nothing), "PULL": (partial(_check_move, push=False), _nothing),
    "MOVE": (partial(_check_move, push=False), _nothing),
    "SQUEEZE": (check_squeeze, _nothing), "CUT": (check_cut, _nothing), "EAT": (check_eat, _nothing),
    "WIPE": (check_wipe, apply_clean), "WASH": (_find_only, apply_clean),
    "RINSE": (_find_only, apply_clean), "SCRUB": (_find_only, apply_clean),
}


# What a one-argument action needs of its node's class and properties, so a caller enumerating
# candidates can skip those that no state of the world would allow. The checks above use the same
# predicates; tests/world/test_properties.py checks that every passing check is possible here.
_NEEDS = {
    "GRAB": _grabbable, "OPEN": _openable, "CLOSE": _openable, "MOVE": _movable, "PULL": _movable,
    "SIT": _has(SITTABLE), "LIE": _has(LIEABLE), "SWITCHON": _has(HAS_SWITCH), "SWITCHOFF": _has(HAS_SWITCH),
    "PLUGIN": _has(HAS_PLUG), "PLUGOUT": _has(HAS_PLUG), "PUTON": _has(CLOTHES), "PUTOFF": _has(CLOTHES),
    "READ": _has(READABLE), "WATCH": _has(LOOKABLE), "GREET": _has(PERSON),
    "DRINK": _has(DRINKABLE | RECIPIENT),
    "CUT": lambda sc, n: sc.props[n] & (EATABLE | CUTTABLE) == EATABLE | CUTTABLE,
}


def possible(action: str, scene, n: int) -> bool:
    """False when `action` on node n fails in every state, by n's class and properties alone."""
    need = _NEEDS.get(action)
    return need is None or need(scene, n)
