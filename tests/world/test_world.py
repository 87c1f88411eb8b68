"""The World API (step / check / why_not / legal_actions / clone) and each documented fix.

Tiny scene ids: kitchen 1, bedroom 2, character 3 (starts in the bedroom), fridge 10,
kitchen_table 11, mug 12 (on the table, close to the fridge), plate 13, juice 14, sink 15,
water 16 (in the sink), chair 17, door 18, bed 20, couch 21 (faces the tv), tv 22, nightstand 23,
book 24, shirt 25 (on the bed), light 26.
"""
import random

import pytest

from e2wm.errors import AgentError, ScriptError
from e2wm.world import StepResult, World, parse_line
from e2wm.world.vocab import (ACTION_ARITY, ACTION_NAMES, CLOSED, LYING, OPEN, R_CLOSE, R_FACING,
                              R_HOLDS_LH, R_HOLDS_RH, R_INSIDE, R_ON, SITTING)

KITCHEN, BEDROOM, CHAR, CHAR2 = 1, 2, 3, 4
FRIDGE, TABLE, MUG, PLATE, JUICE, SINK, WATER, CHAIR = 10, 11, 12, 13, 14, 15, 16, 17
BED, COUCH, TV, NIGHTSTAND, BOOK, SHIRT = 20, 21, 22, 23, 24, 25
ROOMS = {KITCHEN, BEDROOM}


def run(w, *lines, agent=0):
    for line in lines:
        r = w.step(line, agent)
        assert r.ok, (line, r.message)


def rooms_of(w, n):
    return w.out(n, R_INSIDE) & ROOMS


def candidate_lines(w, held=()):
    """Every arity-0/1 line over every node; two-argument lines with a held first argument."""
    sc = w.scene
    for a, k in ACTION_ARITY.items():
        name = ACTION_NAMES[a]
        if k == 0:
            yield f"[{name}]"
        elif k == 1:
            for i in sc.ids:
                yield f"[{name}] <{sc.class_name[i]}> ({i})"
        else:
            for i in held:
                for j in sc.ids:
                    yield f"[{name}] <{sc.class_name[i]}> ({i}) <{sc.class_name[j]}> ({j})"


# ---- step / check / why_not --------------------------------------------------------------------
def test_a_successful_step(tiny_scene):
    w = World.from_dict(tiny_scene)
    r = w.step("[Walk] <kitchen> (1)")
    assert isinstance(r, StepResult) and r.ok and r.message == ""
    assert w.out(CHAR, R_INSIDE) == {KITCHEN}
    assert not w.inn(BEDROOM, R_INSIDE) & {CHAR}


@pytest.mark.parametrize("line, names", [
    ("[Grab] <mug> (12)", ["<character> (3)", "<mug> (12)", "close"]),
    ("[Open] <fridge> (10)", ["<fridge> (10)", "close"]),
    ("[Grab] <bed> (20)", ["<bed> (20)", "grabbable"]),
    ("[PutIn] <mug> (12) <fridge> (10)", ["<character> (3)", "<mug> (12)", "holding"]),
    ("[StandUp]", ["<character> (3)", "sitting"]),
    ("[Sit] <chair> (17)", ["<chair> (17)"]),
    ("[Greet] <tv> (22)", ["<tv> (22)", "person"]),
    ("[Drop] <book> (24)", ["<book> (24)"]),
])
def test_a_failed_step_changes_nothing_and_names_the_objects(tiny_scene, line, names):
    w = World.from_dict(tiny_scene)
    before = w.to_dict()
    assert not w.check(line)
    why = w.why_not(line)
    r = w.step(line)
    assert not r.ok
    assert r.message == why
    for n in names:
        assert n in r.message, (n, r.message)
    assert w.to_dict() == before


def test_check_and_why_not_agree_with_step_and_have_no_side_effects(tiny_two):
    w = World.from_dict(tiny_two)
    rng = random.Random(3)
    for _ in range(12):
        for agent in (0, 1):
            held = sorted(w.held(w.agents[agent]))
            before, grabs = w.to_dict(), {i: w.grab_source(i) for i in w.scene.ids}
            for line in candidate_lines(w, held):
                ok = w.check(line, agent)
                assert (w.why_not(line, agent) is None) == ok
                assert w.clone().step(line, agent).ok == ok, line
            assert w.to_dict() == before
            assert {i: w.grab_source(i) for i in w.scene.ids} == grabs
        agent = rng.randrange(2)
        legal = w.legal_actions(agent)
        run(w, legal[rng.randrange(len(legal))], agent=agent)


def test_step_accepts_parsed_lines(tiny_scene):
    w = World.from_dict(tiny_scene)
    assert w.check(parse_line("[Walk] <mug> (12)"))
    assert w.step(parse_line("[Walk] <mug> (12)")).ok
    assert w.step(parse_line("[Grab] <mug> (12)")).ok
    assert w.holds(CHAR, MUG)


def test_malformed_line_raises_script_error(tiny_scene):
    w = World.from_dict(tiny_scene)
    with pytest.raises(ScriptError):
        w.step("[Fly] <mug> (12)")
    with pytest.raises(ScriptError):
        w.check("[Walk] <mug>")


def test_unknown_node_id_fails_with_a_message(tiny_scene):
    w = World.from_dict(tiny_scene)
    before = w.to_dict()
    for line in ["[Walk] <kitchen> (999)", "[PutIn] <mug> (12) <oven> (998)"]:
        assert not w.check(line)
        r = w.step(line)
        assert not r.ok
        assert "99" in r.message and "not in the scene" in r.message
        assert w.why_not(line) == r.message
    assert w.to_dict() == before


def test_class_name_mismatch_fails(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)")
    assert w.check("[Grab] <mug> (12)")
    r = w.step("[Grab] <plate> (12)")
    assert not r.ok
    assert "mug" in r.message and "plate" in r.message
    assert not w.holds(CHAR, MUG)


@pytest.mark.parametrize("agent", [1, -1, 7])
def test_unknown_agent_raises(tiny_scene, agent):
    w = World.from_dict(tiny_scene)
    for call in (lambda: w.step("[StandUp]", agent), lambda: w.check("[StandUp]", agent),
                 lambda: w.why_not("[StandUp]", agent), lambda: w.legal_actions(agent)):
        with pytest.raises(AgentError, match=str(agent)):
            call()


def test_second_agent_exists_only_with_a_second_character(tiny_two):
    w = World.from_dict(tiny_two)
    assert w.agents == (CHAR, CHAR2)
    assert w.legal_actions(1)
    with pytest.raises(AgentError):
        w.step("[StandUp]", 2)


# ---- legal_actions -----------------------------------------------------------------------------
def _assert_legal_is_exact(w, agent, all_pairs=True):
    legal = w.legal_actions(agent)
    assert len(legal) == len(set(legal))
    legal_set = set(legal)
    c = w.agents[agent]
    held = sorted(w.held(c)) if not all_pairs else sorted(w.scene.ids)
    for line in candidate_lines(w, held):
        assert w.check(line, agent) == (line in legal_set), line
    for line in legal:
        assert w.check(line, agent), line


def _sparse(scene):
    """Objects keep their ON / INSIDE edges but lose every CLOSE edge; the characters are PERSONs."""
    scene["edges"] = [e for e in scene["edges"] if e["relation_type"] != "CLOSE"]
    for n in scene["nodes"]:
        if n["class_name"] == "character":
            n["properties"] = ["PERSON"]
    return scene


@pytest.mark.parametrize("variant", ["as_given", "sparse"])
def test_legal_actions_are_exactly_the_lines_that_pass(tiny_two, variant):
    w = World.from_dict(tiny_two if variant == "as_given" else _sparse(tiny_two))
    rng = random.Random(0)
    for _ in range(25):
        for agent in (0, 1):
            _assert_legal_is_exact(w, agent)
        agent = rng.randrange(2)
        legal = w.legal_actions(agent)
        run(w, legal[rng.randrange(len(legal))], agent=agent)


@pytest.mark.virtualhome
def test_legal_actions_on_robothow(robothow_init):
    w = World.from_dict(robothow_init)
    rng = random.Random(1)
    for _ in range(4):
        _assert_legal_is_exact(w, 0, all_pairs=False)
        legal = w.legal_actions(0)
        run(w, legal[rng.randrange(len(legal))])


def test_legal_actions_reach_objects_on_what_is_close(tiny_two):
    w = World.from_dict(_sparse(tiny_two))
    run(w, "[Walk] <nightstand> (23)")
    assert not w.out(BOOK, R_CLOSE)
    legal = set(w.legal_actions())
    assert "[Grab] <book> (24)" in legal          # on the nightstand the character is close to
    assert "[Greet] <character> (4)" in legal     # a person, anywhere
    assert "[Greet] <character> (3)" in legal


def test_legal_actions_examples(tiny_scene):
    w = World.from_dict(tiny_scene)
    legal = set(w.legal_actions())
    assert "[Walk] <mug> (12)" in legal
    assert "[Grab] <mug> (12)" not in legal      # far away
    assert not w.check("[Grab] <mug> (12)")
    run(w, "[Walk] <mug> (12)")
    legal = set(w.legal_actions())
    assert "[Grab] <mug> (12)" in legal
    assert "[Grab] <book> (24)" not in legal     # now the book is far
    assert not w.check("[Grab] <book> (24)")
    assert w.legal_actions(actions=["grab"]) == ["[Grab] <mug> (12)", "[Grab] <plate> (13)",
                                                 "[Grab] <juice> (14)"]


# ---- clone -------------------------------------------------------------------------------------
def test_clone_is_independent_both_ways(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)")
    c = w.clone()
    assert c.to_dict() == w.to_dict()
    snap = w.to_dict()
    run(c, "[Grab] <mug> (12)", "[Walk] <bed> (20)", "[Sit] <bed> (20)")
    assert w.to_dict() == snap
    assert w.grab_source(MUG) is None and not w.holds(CHAR, MUG)
    csnap = c.to_dict()
    run(w, "[Grab] <juice> (14)", "[Walk] <fridge> (10)", "[Open] <fridge> (10)")
    assert c.to_dict() == csnap
    assert c.grab_source(JUICE) is None
    assert c.has_state(FRIDGE, CLOSED) and w.has_state(FRIDGE, OPEN)


@pytest.mark.slow
def test_clone_is_independent_for_every_legal_step(tiny_two):
    """Every legal line, stepped by a world that has already changed since it was made, leaves
    its clone alone; and stepping the clone leaves the world alone."""
    w = World.from_dict(tiny_two)
    rng = random.Random(5)
    for _ in range(8):
        for agent in (0, 1):
            for first in w.legal_actions(agent):
                a = w.clone()
                run(a, first, agent=agent)
                follow = a.legal_actions(agent)
                second = follow[rng.randrange(len(follow))]
                snap = a.to_dict()
                b = a.clone()
                run(a, second, agent=agent)
                assert b.to_dict() == snap, (first, second)
                snap = a.to_dict()
                run(b, second, agent=agent)
                if b.check(first, agent):
                    run(b, first, agent=agent)
                assert a.to_dict() == snap, (first, second)
        agent = rng.randrange(2)
        legal = w.legal_actions(agent)
        run(w, legal[rng.randrange(len(legal))], agent=agent)


# ---- multi-agent -------------------------------------------------------------------------------
def _touching(w, n):
    return {(a, r, b) for a, r, b in w.edges() if n in (a, b)}


def test_agent_one_acts_without_moving_agent_zero(tiny_two):
    w = World.from_dict(tiny_two)
    mine, my_states = _touching(w, CHAR), w.states(CHAR)
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)", "[Walk] <bed> (20)", "[Sit] <bed> (20)",
        agent=1)
    assert w.holds(CHAR2, MUG) and w.has_state(CHAR2, SITTING)
    assert w.out(CHAR2, R_INSIDE) == {BEDROOM}
    assert _touching(w, CHAR) == mine
    assert w.states(CHAR) == my_states
    assert "[Drop] <mug> (12)" in w.legal_actions(1)
    assert "[Drop] <mug> (12)" not in w.legal_actions(0)
    r = w.step("[Drop] <mug> (12)", 0)
    assert not r.ok and "<character> (3)" in r.message


def test_an_object_held_by_one_agent_cannot_be_grabbed_by_the_other(tiny_two):
    w = World.from_dict(tiny_two)
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)", agent=1)
    run(w, "[Walk] <kitchen_table> (11)", agent=0)
    r = w.step("[Grab] <mug> (12)", 0)
    assert not r.ok and "already grabbed" in r.message
    assert w.holds(CHAR2, MUG) and not w.holds(CHAR, MUG)


# ---- a demo episode ----------------------------------------------------------------------------
def test_demo_episode(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <kitchen> (1)", "[Walk] <fridge> (10)", "[Open] <fridge> (10)",
        "[Grab] <mug> (12)")
    assert w.holds(CHAR, MUG) and not w.out(MUG, R_ON)
    run(w, "[PutIn] <mug> (12) <fridge> (10)", "[Close] <fridge> (10)")
    edges = {(e["from_id"], e["relation_type"], e["to_id"]) for e in w.to_dict()["edges"]}
    assert (MUG, "INSIDE", FRIDGE) in edges
    assert {b for a, r, b in edges if a == MUG and r == "INSIDE"} == {FRIDGE, KITCHEN}
    assert not {(a, r, b) for a, r, b in edges if a == MUG and r == "ON"}
    assert not {(a, r, b) for a, r, b in edges if b == MUG and r.startswith("HOLDS")}
    assert (CHAR, "INSIDE", KITCHEN) in edges
    fridge = next(n for n in w.to_dict()["nodes"] if n["id"] == FRIDGE)
    assert "CLOSED" in fridge["states"] and "OPEN" not in fridge["states"]
    assert w.grab_source(MUG) is None
    # a closed fridge hides the mug
    r = w.step("[Grab] <mug> (12)")
    assert not r.ok and "closed" in r.message


def test_put_in_needs_an_open_container(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)", "[Walk] <fridge> (10)")
    r = w.step("[PutIn] <mug> (12) <fridge> (10)")
    assert not r.ok and "<fridge> (10) is not open" in r.message
    run(w, "[Open] <fridge> (10)", "[PutIn] <mug> (12) <fridge> (10)")
    assert FRIDGE in w.out(MUG, R_INSIDE)
    run(w, "[Walk] <book> (24)", "[Grab] <book> (24)", "[Walk] <sink> (15)",
        "[PutIn] <book> (24) <sink> (15)")   # a container that cannot be opened is always open
    assert SINK in w.out(BOOK, R_INSIDE)


# ---- (a) sitting and lying ---------------------------------------------------------------------
def test_sit_then_standup_and_no_walking_while_sitting(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <chair> (17)", "[Sit] <chair> (17)")
    assert w.has_state(CHAR, SITTING) and CHAIR in w.out(CHAR, R_ON)
    before = w.to_dict()
    for line in ["[Walk] <bed> (20)", "[Run] <kitchen> (1)", "[Find] <book> (24)"]:
        r = w.step(line)
        assert not r.ok and "sitting" in r.message
    assert w.to_dict() == before
    assert not w.step("[Sit] <chair> (17)").ok
    run(w, "[StandUp]")
    assert not w.has_state(CHAR, SITTING)
    assert not w.step("[StandUp]").ok
    run(w, "[Walk] <bed> (20)")


def test_lie_then_sleep_wakeup_standup(tiny_scene):
    w = World.from_dict(tiny_scene)
    assert not w.check("[Sleep]") and not w.check("[WakeUp]")
    run(w, "[Walk] <bed> (20)", "[Lie] <bed> (20)")
    assert w.has_state(CHAR, LYING) and not w.has_state(CHAR, SITTING)
    assert not w.step("[Walk] <kitchen> (1)").ok
    run(w, "[Sleep]", "[WakeUp]", "[StandUp]")
    assert not w.has_state(CHAR, LYING)
    assert not w.check("[Sleep]")
    run(w, "[Walk] <kitchen> (1)")


def test_sit_after_lie_replaces_lying(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <couch> (21)", "[Lie] <couch> (21)", "[Sit] <couch> (21)")
    assert w.has_state(CHAR, SITTING) and not w.has_state(CHAR, LYING)
    assert TV in w.out(CHAR, R_FACING)   # sitting on the couch faces what the couch faces
    run(w, "[Watch] <tv> (22)")


# ---- (b) a held / put object is in the right room ------------------------------------------------
def test_held_object_moves_with_the_character(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)")
    assert rooms_of(w, MUG) == {KITCHEN}
    run(w, "[Walk] <bed> (20)")
    assert rooms_of(w, MUG) == {BEDROOM}
    assert w.holds(CHAR, MUG) and MUG in w.out(CHAR, R_CLOSE)
    run(w, "[Walk] <nightstand> (23)", "[PutBack] <mug> (12) <nightstand> (23)")
    assert w.out(MUG, R_ON) == {NIGHTSTAND}
    assert rooms_of(w, MUG) == {BEDROOM}
    assert w.room_of(MUG) == BEDROOM


def test_put_object_lands_in_the_destination_room_only(tiny_scene):
    # a world where the held mug is still INSIDE the kitchen while the character is in the bedroom
    tiny_scene["edges"] = [e for e in tiny_scene["edges"]
                           if MUG not in (e["from_id"], e["to_id"]) or
                           (e["relation_type"], e["to_id"]) == ("INSIDE", KITCHEN)]
    tiny_scene["edges"] += [{"from_id": CHAR, "relation_type": "HOLDS_RH", "to_id": MUG},
                            {"from_id": CHAR, "relation_type": "CLOSE", "to_id": NIGHTSTAND},
                            {"from_id": NIGHTSTAND, "relation_type": "CLOSE", "to_id": CHAR}]
    w = World.from_dict(tiny_scene)
    assert rooms_of(w, MUG) == {KITCHEN}
    run(w, "[PutBack] <mug> (12) <nightstand> (23)")
    assert rooms_of(w, MUG) == {BEDROOM}
    assert w.out(MUG, R_ON) == {NIGHTSTAND}


# ---- (c) PutObjBack ------------------------------------------------------------------------------
def _step_agrees_with_check(w, line):
    expected = w.check(line)
    before = w.to_dict()
    r = w.step(line)
    assert r.ok == expected
    if not r.ok:
        assert w.to_dict() == before
    return r


def test_putobjback_returns_the_object_only_where_it_came_from(tiny_scene):
    w = World.from_dict(tiny_scene)
    r = _step_agrees_with_check(w, "[PutObjBack] <mug> (12)")
    assert not r.ok and "not grabbed" in r.message
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)")
    assert w.grab_source(MUG) == (TABLE, R_ON)
    run(w, "[Walk] <bed> (20)")
    r = _step_agrees_with_check(w, "[PutObjBack] <mug> (12)")
    assert not r.ok and "<kitchen_table> (11)" in r.message
    assert w.holds(CHAR, MUG)
    run(w, "[Walk] <kitchen_table> (11)")
    r = _step_agrees_with_check(w, "[PutObjBack] <mug> (12)")
    assert r.ok
    assert w.out(MUG, R_ON) == {TABLE} and rooms_of(w, MUG) == {KITCHEN}
    assert not w.holds(CHAR, MUG) and w.grab_source(MUG) is None
    assert not _step_agrees_with_check(w, "[PutObjBack] <mug> (12)").ok


def test_putobjback_into_a_container(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <water> (16)", "[Grab] <water> (16)")
    assert w.grab_source(WATER) == (SINK, R_INSIDE)
    assert not w.out(WATER, R_INSIDE) & {SINK}
    r = _step_agrees_with_check(w, "[PutObjBack] <water> (16)")
    assert r.ok and SINK in w.out(WATER, R_INSIDE) and not w.held(CHAR)


def test_grab_source_ties_take_the_lowest_id(tiny_scene):
    # the mug rests on nothing; it is close to the fridge (10) and the table (11)
    tiny_scene["edges"] = [e for e in tiny_scene["edges"]
                           if not (e["from_id"] == MUG and e["relation_type"] == "ON")]
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <fridge> (10)")
    assert w.out(MUG, R_CLOSE) == {FRIDGE, TABLE}
    run(w, "[Grab] <mug> (12)")
    assert w.grab_source(MUG) == (FRIDGE, R_CLOSE)


# ---- (d) Find ------------------------------------------------------------------------------------
def test_find_far_walks_there(tiny_scene):
    w = World.from_dict(tiny_scene)
    assert not w.close_to(CHAR, MUG)
    run(w, "[Find] <mug> (12)")
    assert w.out(CHAR, R_INSIDE) == {KITCHEN}
    assert MUG in w.out(CHAR, R_CLOSE) and w.close_to(CHAR, MUG)
    run(w, "[Grab] <mug> (12)")


def test_find_near_stays_and_stops_facing(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)", "[TurnTo] <fridge> (10)")
    assert w.out(CHAR, R_FACING) == {FRIDGE}
    run(w, "[Find] <plate> (13)")   # close to the table the plate is on
    assert w.out(CHAR, R_INSIDE) == {KITCHEN}
    assert not w.out(CHAR, R_FACING)
    assert PLATE in w.out(CHAR, R_CLOSE) and MUG in w.out(CHAR, R_CLOSE)


def _every_find_and_putoff(w):
    for i in w.scene.ids:
        label = f"<{w.scene.class_name[i]}> ({i})"
        for action in ("Find", "PutOff"):
            r = w.clone().step(f"[{action}] {label}")
            assert isinstance(r, StepResult)
            assert r.ok or r.message


def _find_and_putoff_never_raise(scene):
    w = World.from_dict(scene)
    _every_find_and_putoff(w)
    for target in ("[Walk] <shirt> (25)", "[Walk] <chair> (103)"):   # tiny, RobotHow
        if w.check(target):
            run(w, target)
    legal = w.legal_actions(actions=["grab"])
    assert legal
    run(w, legal[0])
    _every_find_and_putoff(w)


def test_find_and_putoff_never_raise(tiny_scene):
    _find_and_putoff_never_raise(tiny_scene)


@pytest.mark.virtualhome
def test_find_and_putoff_never_raise_on_robothow(robothow_init):
    _find_and_putoff_never_raise(robothow_init)


def test_nothing_in_no_room(tiny_scene):
    tiny_scene["nodes"].append({"id": 99, "class_name": "ghost", "category": "Props",
                                "properties": ["GRABBABLE"], "states": []})
    w = World.from_dict(tiny_scene)
    for line in ["[Find] <ghost> (99)", "[Walk] <ghost> (99)"]:
        r = w.step(line)
        assert not r.ok and "<ghost> (99)" in r.message and "no room" in r.message


def _homeless(tiny_scene):
    tiny_scene["edges"] = [e for e in tiny_scene["edges"]
                           if not (e["from_id"] == CHAR and e["relation_type"] == "INSIDE")]
    tiny_scene["edges"] += [{"from_id": CHAR, "relation_type": "CLOSE", "to_id": MUG},
                            {"from_id": MUG, "relation_type": "CLOSE", "to_id": CHAR},
                            {"from_id": CHAR, "relation_type": "FACING", "to_id": TV}]
    return World.from_dict(tiny_scene)


def test_a_character_in_no_room_fails_walk_and_watch(tiny_scene):
    # the official executor raises in both cases
    w = _homeless(tiny_scene)
    before = w.to_dict()
    for line in ["[Walk] <kitchen> (1)", "[Find] <book> (24)", "[Watch] <tv> (22)"]:
        r = w.step(line)
        assert not r.ok and "<character> (3)" in r.message
    assert w.to_dict() == before


@pytest.mark.parametrize("line", ["[Grab] <mug> (12)", "[Drop] <mug> (12)"])
def test_grab_or_drop_by_a_character_in_no_room_does_not_raise(tiny_scene, line):
    if line.startswith("[Drop]"):
        tiny_scene["edges"].append({"from_id": CHAR, "relation_type": "HOLDS_RH", "to_id": MUG})
    w = _homeless(tiny_scene)
    before = w.to_dict()
    assert not w.check(line)
    r = w.step(line)
    assert not r.ok and "in no room" in r.message
    assert w.to_dict() == before


# ---- (e) Pour ------------------------------------------------------------------------------------
def test_pour_keeps_a_held_bottle_out_of_the_cup(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <juice> (14)", "[Grab] <juice> (14)", "[Pour] <juice> (14) <mug> (12)")
    assert w.holds(CHAR, JUICE)
    assert MUG not in w.out(JUICE, R_INSIDE)
    assert w.out(JUICE, R_INSIDE) == {KITCHEN}


def test_pouring_water_releases_it_into_the_recipient(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <water> (16)", "[Grab] <water> (16)", "[Walk] <mug> (12)")
    hand = R_HOLDS_RH if WATER in w.out(CHAR, R_HOLDS_RH) else R_HOLDS_LH
    assert WATER in w.out(CHAR, hand)
    run(w, "[Pour] <water> (16) <mug> (12)")
    assert not w.holds(CHAR, WATER)
    assert MUG in w.out(WATER, R_INSIDE)


def test_pour_preconditions(tiny_scene):
    w = World.from_dict(tiny_scene)
    run(w, "[Walk] <mug> (12)", "[Grab] <mug> (12)")
    for line, why in [("[Pour] <mug> (12) <plate> (13)", "not pourable"),
                      ("[Pour] <juice> (14) <plate> (13)", "not holding"),
                      ("[Pour] <mug> (12) <kitchen_table> (11)", "not pourable")]:
        r = w.step(line)
        assert not r.ok and why in r.message, (line, r.message)
    run(w, "[Grab] <juice> (14)")
    r = w.step("[Pour] <juice> (14) <kitchen_table> (11)")
    assert not r.ok and "not recipient" in r.message
