"""Activities: the library's specs and fit, instantiation, RobotHow goal diffs, initial conditions.

Tiny scene ids: kitchen 1, bedroom 2, character 3, fridge 10, kitchen_table 11, mug 12, plate 13,
juice 14, sink 15, water 16, chair 17, door 18, bed 20, couch 21 (faces the tv), tv 22,
nightstand 23, book 24, shirt 25, light 26.
"""
import copy
import random
from functools import lru_cache

import pytest

from e2wm.world import World, format_line
from e2wm.world.activities import (ACTIVITIES, Activity, ActivityError, Goal, get_activity,
                                   goal_from_graphs, goal_from_program, initial_conditions)
from e2wm.world.catalog import CATALOG
from e2wm.world.facts import Fact
from e2wm.world.procedural import generate_apartment
from e2wm.world.vocab import CLOSED, ON_, OPEN, PLUGGED_OUT, R_FACING, R_INSIDE, R_ON

SEEDS = range(200)
CHAR, FRIDGE, TABLE, MUG, JUICE, TV, COUCH, LIGHT = 3, 10, 11, 12, 14, 22, 21, 26


@lru_cache(maxsize=None)
def _world(seed: int) -> World:
    return World.from_dict(generate_apartment(seed))


def world(seed: int) -> World:
    return _world(seed).clone()


def fitting(activity, n=None):
    seeds = [s for s in SEEDS if activity.fits(_world(s).scene)]
    return seeds if n is None else seeds[:n]


def goals(activity, n):
    """(world, goal) for up to n fitting seeds where the activity can be posed."""
    out = []
    for s in fitting(activity):
        w = world(s)
        try:
            out.append((w, activity.instantiate(w, random.Random(s))))
        except ActivityError:
            continue
        if len(out) == n:
            break
    return out


def line(w, action, *ids):
    return format_line(action, [(w.scene.class_name[i], i) for i in ids])


def run(w, *lines):
    for x in lines:
        r = w.step(x)
        assert r.ok, (x, r.message)


# ---- the library ---------------------------------------------------------------------------------
def test_library_size_and_names():
    names = [a.name for a in ACTIVITIES]
    assert len(names) >= 60
    assert len(set(names)) == len(names)
    assert all(n == " ".join(n.lower().split()) for n in names)
    assert all(1 <= len(a.goals) <= 4 for a in ACTIVITIES)


def test_every_spec_parses_and_names_catalog_classes():
    for a in ACTIVITIES:
        for g in a.goals:
            Activity("probe", (g,))   # one spec alone parses
        assert a.classes(), a.name
        for token in a.classes():
            unknown = [c for c in token.split("|") if c not in CATALOG]
            assert not unknown, (a.name, unknown)


@pytest.mark.parametrize("spec", [
    "television SHINY", "mug UNDER table", "agent JUMPS bed", "agent INSIDE couch",
    "shirt ON agent", "", "mug", "mug ON table now", "Mug ON table", "agent ON",
])
def test_bad_spec_raises(spec):
    with pytest.raises(ActivityError, match="goal spec"):
        Activity("probe", (spec,))


def test_overlapping_tokens_and_bad_names_raise():
    with pytest.raises(ActivityError, match="overlap"):
        Activity("probe", ("mug ON table", "mug|cup INSIDE sink"))
    with pytest.raises(ActivityError, match="lower-case"):
        Activity("Watch TV", ("television ON",))
    with pytest.raises(ActivityError, match="uses"):
        Activity("probe", ("television ON",), uses=("Remote",))


def test_classes_in_order_of_first_use():
    assert get_activity("watch tv").classes() == ("television", "couch|bed")
    assert get_activity("wash hands").classes() == ("soap", "faucet", "sink")


def test_every_activity_fits_and_poses_in_some_procedural_scene():
    fits = {a.name: len(fitting(a)) for a in ACTIVITIES}
    assert min(fits.values()) >= 1, sorted(fits.items(), key=lambda kv: kv[1])[:5]
    for a in ACTIVITIES:
        assert goals(a, 1), f"{a.name}: every fitting scene already satisfies it"


# ---- instantiation -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["watch tv", "put groceries in fridge", "take a nap", "wash clothes"])
def test_instantiation_is_deterministic(name):
    a = get_activity(name)
    for s in fitting(a, 10):
        w = world(s)
        try:
            g = a.instantiate(w, random.Random(s))
        except ActivityError:
            continue
        assert a.instantiate(w, random.Random(s)) == g
        assert isinstance(g, Goal) and g.activity == name and g.source == "library"
        assert list(g.facts) == sorted(set(g.facts))
        assert list(g.objects) == sorted(set(g.objects))
        assert any(not f.holds(w) for f in g.facts)


def test_a_token_used_twice_binds_one_node():
    for w, g in goals(get_activity("take a nap"), 20):
        c = w.agents[0]
        (seat,) = [f.b for f in g.facts if f.kind == "edge" and f.a == c]
        (blanket_on,) = [f.b for f in g.facts if f.kind == "edge" and f.a != c]
        assert seat == blanket_on
    for w, g in goals(get_activity("watch tv"), 20):
        on = {f.a for f in g.facts if f.kind == "state" and f.name == "ON"}
        facing = {f.b for f in g.facts if f.name == "FACING"}
        assert on == facing and len(on) == 1


def test_binding_prefers_the_room_of_earlier_bindings():
    """The seat binds in the television's room, so it faces the television (procedural seats do)."""
    posed = goals(get_activity("watch tv"), 30)
    assert len(posed) >= 20
    for w, g in posed:
        (tv,) = {f.a for f in g.facts if f.kind == "state" and f.name == "ON"}
        (seat,) = [f.b for f in g.facts if f.name == "ON" and f.kind == "edge"]
        assert w.has_edge(seat, R_FACING, tv)


def test_objects_cover_fact_nodes_containers_and_what_blocks_a_seat():
    for a in ACTIVITIES:
        for w, g in goals(a, 5):
            sc, chars = w.scene, set(w.agents)
            named = {n for f in g.facts for n in f.nodes()} - sc.rooms - chars
            assert named <= set(g.objects) and not set(g.objects) & (sc.rooms | chars), a.name
            for n in named:
                assert w.out(n, R_INSIDE) - sc.rooms <= set(g.objects), (a.name, n)
            for f in g.facts:
                if f.kind == "edge" and f.a in chars and f.name == "ON":
                    assert w.inn(f.b, R_ON) - chars <= set(g.objects), (a.name, f)


def test_uses_classes_are_bound_into_objects():
    for w, g in goals(get_activity("wash hands"), 10):
        assert any(w.scene.class_name[o] == "sink" for o in g.objects)


def test_missing_classes_raise_naming_them(tiny_scene):
    w = World.from_dict(tiny_scene)
    a = get_activity("watch tv")
    assert not a.fits(w.scene)   # the tiny scene's screen is a <tv>, not a <television>
    with pytest.raises(ActivityError, match=r"^activity 'watch tv' needs television; scene lacks it$"):
        a.instantiate(w, random.Random(0))
    with pytest.raises(ActivityError, match="needs pillow, blanket; scene lacks them"):
        get_activity("make bed").instantiate(w, random.Random(0))


def test_an_activity_already_done_raises(tiny_scene):
    w = World.from_dict(tiny_scene)
    with pytest.raises(ActivityError, match="already hold"):
        get_activity("turn on light").instantiate(w, random.Random(0))   # the light is ON
    g = get_activity("turn off light").instantiate(w, random.Random(0))
    assert g.facts == (Fact.state(LIGHT, "OFF"),) and g.objects == (LIGHT,)


def test_bad_agent_raises(tiny_scene):
    from e2wm.errors import AgentError
    with pytest.raises(AgentError):
        get_activity("turn off light").instantiate(World.from_dict(tiny_scene), random.Random(0), agent=1)


def test_get_activity():
    assert get_activity("watch tv").name == "watch tv"
    assert get_activity("  Watch  TV ").name == "watch tv"
    with pytest.raises(ActivityError, match="'wach tv'.*did you mean 'watch tv'"):
        get_activity("wach tv")
    with pytest.raises(ActivityError, match="are known"):
        get_activity("qqqqqqqq")


# ---- hand-written plans reach instantiated goals -------------------------------------------------
def _clear_seat(w, seat):
    for x in sorted(w.inn(seat, R_ON) - set(w.agents)):
        run(w, line(w, "GRAB", x), line(w, "DROP", x))


def test_a_scripted_plan_watches_tv():
    posed = goals(get_activity("watch tv"), 10)
    assert posed
    for w, g in posed:
        (tv,) = {f.a for f in g.facts if f.kind == "state" and f.name == "ON"}
        (seat,) = [f.b for f in g.facts if f.name == "ON" and f.kind == "edge"]
        run(w, line(w, "WALK", tv))
        if w.states(tv) & PLUGGED_OUT:
            run(w, line(w, "PLUGIN", tv))
        if not w.states(tv) & ON_:
            run(w, line(w, "SWITCHON", tv))
        run(w, line(w, "WALK", seat))
        _clear_seat(w, seat)
        run(w, line(w, "SIT", seat))
        assert all(f.holds(w) for f in g.facts), [f.text(w.scene) for f in g.facts if not f.holds(w)]


def test_a_scripted_plan_puts_groceries_in_the_fridge():
    posed = goals(get_activity("put groceries in fridge"), 10)
    assert posed
    for w, g in posed:
        (fridge,) = {f.a for f in g.facts if f.kind == "state"}
        food = [f.a for f in g.facts if f.kind == "edge" and not f.holds(w)]
        run(w, line(w, "WALK", fridge))
        if w.states(fridge) & CLOSED:
            run(w, line(w, "OPEN", fridge))
        for x in food:
            for box in w.out(x, R_INSIDE) - w.scene.rooms:
                if w.states(box) & CLOSED:
                    run(w, line(w, "WALK", box), line(w, "OPEN", box))
            run(w, line(w, "WALK", x), line(w, "GRAB", x))
        run(w, line(w, "WALK", fridge), *[line(w, "PUTIN", x, fridge) for x in food])
        run(w, line(w, "CLOSE", fridge))
        assert all(f.holds(w) for f in g.facts), [f.text(w.scene) for f in g.facts if not f.holds(w)]


# ---- RobotHow goals ------------------------------------------------------------------------------
def test_goal_from_graphs(tiny_scene):
    final = copy.deepcopy(tiny_scene)
    nodes = {n["id"]: n for n in final["nodes"]}
    nodes[FRIDGE]["states"] = ["OPEN", "OFF", "PLUGGED_IN"]
    nodes[TV]["states"] = ["ON", "PLUGGED_IN"]
    final["edges"] = [e for e in final["edges"]
                      if not (e["from_id"] in (CHAR, MUG, JUICE) and e["relation_type"] in ("INSIDE", "ON"))]
    final["edges"] += [
        {"from_id": CHAR, "relation_type": "INSIDE", "to_id": 1},        # walked: dropped
        {"from_id": CHAR, "relation_type": "CLOSE", "to_id": MUG},       # dropped
        {"from_id": CHAR, "relation_type": "FACING", "to_id": TV},       # dropped
        {"from_id": CHAR, "relation_type": "HOLDS_RH", "to_id": MUG},
        {"from_id": CHAR, "relation_type": "ON", "to_id": COUCH},
        {"from_id": MUG, "relation_type": "INSIDE", "to_id": 2},          # moved rooms: kept
        {"from_id": JUICE, "relation_type": "INSIDE", "to_id": FRIDGE},
        {"from_id": JUICE, "relation_type": "INSIDE", "to_id": 1},        # unchanged
    ]
    g = goal_from_graphs(tiny_scene, final, "tidy up", "robothow:probe", extra_objects=(TABLE, 1, CHAR))
    assert g.facts == tuple(sorted([
        Fact.state(FRIDGE, "OPEN"), Fact.state(TV, "ON"), Fact.holding(CHAR, MUG),
        Fact.edge(CHAR, "ON", COUCH), Fact.edge(MUG, "INSIDE", 2), Fact.edge(JUICE, "INSIDE", FRIDGE),
    ]))
    assert g.objects == (FRIDGE, TABLE, MUG, JUICE, COUCH, TV)   # rooms and the character left out
    assert (g.activity, g.source, g.agent) == ("tidy up", "robothow:probe", 0)
    scene = World.from_dict(tiny_scene).scene
    for f in g.facts:
        assert Fact.parse(f.text(scene), scene) == f


def test_goal_from_graphs_keeps_where_the_character_went_when_nothing_else_changed(tiny_scene):
    final = copy.deepcopy(tiny_scene)
    final["edges"] = [e for e in final["edges"] if e["from_id"] != CHAR]
    final["edges"].append({"from_id": CHAR, "relation_type": "INSIDE", "to_id": 1})
    g = goal_from_graphs(tiny_scene, final, "go to kitchen", "robothow:probe")
    assert g.facts == (Fact.edge(CHAR, "INSIDE", 1),) and g.objects == ()
    with pytest.raises(ActivityError, match="adds no goal fact"):
        goal_from_graphs(tiny_scene, tiny_scene, "idle", "robothow:probe")
    final["edges"].append({"from_id": CHAR, "relation_type": "HOLDS_LH", "to_id": 99})
    with pytest.raises(ActivityError, match=r"names nodes \[99\]"):
        goal_from_graphs(tiny_scene, final, "ghost", "robothow:probe")


def test_initial_conditions(tiny_scene):
    w = World.from_dict(tiny_scene)
    assert initial_conditions(w, [MUG, FRIDGE]) == [
        Fact.state(MUG, "CLEAN"), Fact.edge(MUG, "ON", TABLE), Fact.edge(MUG, "INSIDE", 1),
        Fact.state(FRIDGE, "CLOSED"), Fact.state(FRIDGE, "OFF"), Fact.state(FRIDGE, "PLUGGED_IN"),
        Fact.edge(FRIDGE, "INSIDE", 1),
    ]
    run(w, "[Walk] <fridge> (10)", "[Open] <fridge> (10)", "[Walk] <juice> (14)",
        "[Grab] <juice> (14)", "[Walk] <fridge> (10)", "[PutIn] <juice> (14) <fridge> (10)")
    assert initial_conditions(w, [JUICE]) == [Fact.edge(JUICE, "INSIDE", FRIDGE),
                                              Fact.edge(JUICE, "INSIDE", 1)]
    assert initial_conditions(w, [FRIDGE])[0] == Fact.state(FRIDGE, "OPEN") and w.states(FRIDGE) & OPEN


def test_fact_text_round_trips_for_library_goals():
    for a in ACTIVITIES:
        for w, g in goals(a, 2):
            for f in g.facts + tuple(initial_conditions(w, g.objects)):
                assert Fact.parse(f.text(w.scene), w.scene) == f


@pytest.mark.virtualhome
def test_goal_from_program():
    pytest.importorskip("virtualhome_eval")
    from e2wm.world.scenes import robothow_programs
    p = robothow_programs()[0]
    g = goal_from_program(p)
    scene = World.from_dict(p.graphs["init_graph"]).scene
    assert (g.activity, g.source, g.agent) == (p.title.lower(), f"robothow:{p.name}", 0)
    script = {i for x in p.lines for i in x.ids} - scene.rooms - set(scene.characters)
    assert script <= set(g.objects)
    for f in g.facts:
        assert Fact.parse(f.text(scene), scene) == f


@pytest.mark.virtualhome
@pytest.mark.slow
def test_robothow_programs_reach_their_goals_in_the_world():
    """Replay every RobotHow program; its goal facts should hold at the end. The known misses come
    from the engine's documented Pour difference (a poured bottle is not kept INSIDE the recipient)."""
    pytest.importorskip("virtualhome_eval")
    from e2wm.world.scenes import robothow_programs
    programs = robothow_programs()
    missed, empty = {}, []
    for p in programs:
        graphs = p.graphs
        try:
            g = goal_from_graphs(graphs["init_graph"], graphs["final_graph"], p.title, p.name)
        except ActivityError:   # the program only walks up to and turns to things
            empty.append(p.name)
            continue
        w = World.from_dict(graphs["init_graph"])
        for x in p.lines:
            if not w.step(x).ok:
                break
        unmet = [f.text(w.scene) for f in g.facts if not f.holds(w)]
        if unmet:
            missed[p.name] = unmet
    assert len(programs) == 518 and len(empty) < 20, empty
    assert len(missed) <= 5, missed
    assert all(" INSIDE " in f for unmet in missed.values() for f in unmet), missed


def test_unmet_specs_judge_facts_by_class_and_refuse_bad_text(tiny_scene):
    a = get_activity("put groceries in fridge")
    posed = goals(a, 1)
    assert posed
    w, g = posed[0]
    texts = [f.text(w.scene) for f in g.facts]
    assert a.unmet_specs(texts) == []
    assert a.unmet_specs([t for t in texts if "CLOSED" not in t]) == ["fridge CLOSED"]
    assert get_activity("watch tv").unmet_specs(["<character> (3) || ON || <couch> (21)"]) == [
        "television ON", "agent SITS couch|bed", "agent FACING television"]   # SITS needs SITTING too
    with pytest.raises(ActivityError, match="goal fact 'fridge CLOSED'"):
        a.unmet_specs(["fridge CLOSED"])
