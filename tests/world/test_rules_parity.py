"""Parity with the official VirtualHome executor (eai-eval): same verdicts and the same state,
except exactly where a documented fix (conformance.FIXES) says otherwise.

Scenario steps are written `"[Walk] <mug> (12)"` (expected to succeed), `"! [Grab] ..."` (expected
to fail) and `"1: ..."` (agent 1).
"""
import copy

import pytest

pytest.importorskip("virtualhome_eval")
pytestmark = pytest.mark.virtualhome

from e2wm.world import World                                        # noqa: E402
from e2wm.world.conformance import FIXES, random_differential, world_facts   # noqa: E402
from e2wm.world.oracle import Oracle                                 # noqa: E402
from e2wm.world.scenes import robothow_programs                      # noqa: E402


def _parse_step(s):
    expect = not s.startswith("!")
    s = s.lstrip("! ")
    agent = 0
    if s[:1].isdigit():
        agent, s = int(s[0]), s[2:].strip()
    return agent, s, expect


class Pair:
    """One e2wm world and one official world, stepped side by side."""

    def __init__(self, scene):
        self.w, self.o = World.from_dict(scene), Oracle(copy.deepcopy(scene))

    def step(self, line, agent=0):
        ours_check = self.w.check(line, agent)
        theirs_check = self.o.check(Oracle.script(line), agent)
        ours = self.w.step(line, agent).ok
        theirs = self.o.step(Oracle.script(line), agent)
        return ours_check, theirs_check, ours, theirs

    def diff(self):
        (s1, e1), (s2, e2) = world_facts(self.w), self.o.facts()
        return s1 ^ s2, e1 - e2, e2 - e1   # states, ours only, theirs only

    def assert_same(self, where=""):
        states, ours_only, theirs_only = self.diff()
        assert not states and not ours_only and not theirs_only, (where, states, ours_only,
                                                                 theirs_only)


def _run_same(scene, steps):
    p = Pair(scene)
    p.assert_same("initial")
    for s in steps:
        agent, line, expect = _parse_step(s)
        verdicts = p.step(line, agent)
        assert verdicts == (expect,) * 4, (line, verdicts)
        p.assert_same(line)
    return p


# ---- scenarios where no fix applies --------------------------------------------------------------
TINY_SAME = {
    "demo": ["[Walk] <kitchen> (1)", "[Walk] <fridge> (10)", "! [Grab] <book> (24)",
             "[Open] <fridge> (10)", "! [Open] <fridge> (10)", "[Grab] <mug> (12)",
             "[PutIn] <mug> (12) <fridge> (10)", "[Close] <fridge> (10)",
             "! [Grab] <mug> (12)", "! [PutIn] <mug> (12) <fridge> (10)"],
    "sit_lie": ["[Walk] <chair> (17)", "[Sit] <chair> (17)", "! [Walk] <bed> (20)",
                "! [Sit] <chair> (17)", "[StandUp]", "! [StandUp]", "[Walk] <bed> (20)",
                "[Lie] <bed> (20)", "! [Lie] <bed> (20)", "[Sleep]", "[WakeUp]", "[StandUp]",
                "! [Sleep]", "! [WakeUp]"],
    "find_and_clothes": ["[Find] <mug> (12)", "[Find] <plate> (13)", "[Find] <bed> (20)",
                         "! [PutOff] <shirt> (25)", "[Grab] <shirt> (25)",
                         "[PutOn] <shirt> (25)", "! [PutOn] <shirt> (25)",
                         "[PutOff] <shirt> (25)", "! [PutOff] <shirt> (25)"],
    "tv": ["[Walk] <couch> (21)", "[Sit] <couch> (21)", "[Watch] <tv> (22)",
           "[SwitchOn] <tv> (22)", "! [SwitchOn] <tv> (22)", "[LookAt] <tv> (22)", "[StandUp]",
           "[TurnTo] <light> (26)", "! [LookAt] <tv> (22)", "[TurnTo] <tv> (22)",
           "[PlugOut] <tv> (22)", "[SwitchOff] <tv> (22)", "! [SwitchOn] <tv> (22)",
           "! [PlugOut] <tv> (22)", "[PlugIn] <tv> (22)", "[SwitchOn] <tv> (22)"],
    "hands": ["[Walk] <kitchen_table> (11)", "[Grab] <mug> (12)", "[Grab] <plate> (13)",
              "! [Grab] <juice> (14)", "! [Open] <fridge> (10)", "[Drop] <plate> (13)",
              "[PutBack] <mug> (12) <plate> (13)", "[Grab] <juice> (14)", "[Drink] <juice> (14)",
              "! [Drink] <plate> (13)", "[Walk] <water> (16)", "[Grab] <water> (16)",
              "[Walk] <mug> (12)", "[Pour] <water> (16) <mug> (12)", "! [Pour] <water> (16) <mug> (12)",
              "[Wash] <mug> (12)", "[Wipe] <plate> (13)", "! [Wipe] <kitchen_table> (11)", "[Touch] <plate> (13)",
              "! [Read] <juice> (14)", "[Release] <juice> (14)", "! [Cut] <plate> (13)"],
    "fridge_on": ["[Walk] <fridge> (10)", "[SwitchOn] <fridge> (10)", "! [Open] <fridge> (10)",
                  "[SwitchOff] <fridge> (10)", "[Open] <fridge> (10)", "[Close] <fridge> (10)",
                  "! [Close] <fridge> (10)", "! [Sit] <fridge> (10)", "! [Greet] <fridge> (10)"],
}

TWO_SAME = {
    "two_agents": ["1: [Walk] <mug> (12)", "1: [Grab] <mug> (12)", "[Walk] <kitchen_table> (11)",
                   "! [Grab] <mug> (12)", "[Grab] <plate> (13)", "1: [Sit] <chair> (17)",
                   "[Walk] <chair> (17)", "! [Sit] <chair> (17)", "! 1: [Walk] <bed> (20)",
                   "! [Greet] <character> (4)", "1: [StandUp]", "! 1: [StandUp]",
                   "! [Sit] <chair> (17)", "1: [Walk] <fridge> (10)", "1: [Open] <fridge> (10)",
                   "! [StandUp]"],
}

ROBOTHOW_SAME = {
    "microwave": ["[Walk] <cupboard> (229)", "[Grab] <cup> (2009)", "[Grab] <knife> (2003)",
                  "[Walk] <microwave> (297)", "! [Grab] <tea> (2000)", "! [Open] <microwave> (297)",
                  "[Drop] <knife> (2003)", "[Open] <microwave> (297)", "[Grab] <tea> (2000)",
                  "[PutIn] <cup> (2009) <microwave> (297)", "[Close] <microwave> (297)",
                  "[SwitchOn] <microwave> (297)", "! [Open] <microwave> (297)",
                  "[SwitchOff] <microwave> (297)", "[Open] <microwave> (297)"],
    "office": ["[Walk] <couch> (352)", "[Sit] <couch> (352)", "! [Walk] <computer> (417)",
               "[StandUp]", "! [Lie] <couch> (352)", "! [Sleep]", "[Walk] <television> (410)",
               "[SwitchOn] <television> (410)", "[TurnTo] <television> (410)",
               "[Watch] <television> (410)", "[LookAt] <television> (410)",
               "[PointAt] <television> (410)", "[Find] <check> (2005)", "[Grab] <check> (2005)",
               "[Read] <check> (2005)", "[Squeeze] <check> (2005)", "[Walk] <mat> (401)",
               "[Push] <mat> (401)", "[Pull] <mat> (401)", "[Wipe] <mat> (401)",
               "[Touch] <mat> (401)", "! [Type] <computer> (417)"],
}


@pytest.mark.parametrize("name", sorted(TINY_SAME))
def test_tiny_scenarios_match_the_official_executor(tiny_scene, name):
    _run_same(tiny_scene, TINY_SAME[name])


@pytest.mark.parametrize("name", sorted(TWO_SAME))
def test_two_agent_scenarios_match_the_official_executor(tiny_two, name):
    p = _run_same(tiny_two, TWO_SAME[name])
    assert p.w.holds(4, 12) and p.w.holds(3, 13)


@pytest.mark.parametrize("name", sorted(ROBOTHOW_SAME))
def test_robothow_scenarios_match_the_official_executor(robothow_init, name):
    _run_same(robothow_init, ROBOTHOW_SAME[name])


def _carried_and_poured(lines):
    return ({ln.ids[0] for ln in lines if ln.action == "GRAB"},
            {ln.ids for ln in lines if ln.action == "POUR"})


@pytest.mark.parametrize("k", range(6))
def test_robothow_programs_step_by_step(k):
    """Each step of a shipped program: same verdicts, and any state difference is documented."""
    prog = robothow_programs()[k]
    lines = prog.lines
    p = Pair(prog.graphs["init_graph"])
    rooms = p.w.scene.rooms
    for i, ln in enumerate(lines):
        line = ln.format()
        ours_check, theirs_check, ours, theirs = p.step(line)
        assert ours and theirs, (prog.name, line)
        if ln.action != "PUTOBJBACK":
            assert ours_check and theirs_check, (prog.name, line)
        carried, poured = _carried_and_poured(lines[:i + 1])
        states, ours_only, theirs_only = p.diff()
        assert not states
        for a, r, b in ours_only | theirs_only:
            assert r == "INSIDE" and ((a in carried and b in rooms) or (a, b) in poured), \
                (prog.name, line, (a, r, b))


# ---- documented differences ----------------------------------------------------------------------
def test_the_documented_fixes_are_listed():
    assert set(FIXES) == {"held_object_room", "putobjback_inverted", "pour_keeps_held",
                          "grab_support_tiebreak", "official_crash"}


def test_held_object_room_on_tiny(tiny_scene):
    p = _run_same(tiny_scene, ["[Walk] <mug> (12)", "[Grab] <mug> (12)"])
    for line in ["[Walk] <nightstand> (23)", "[PutBack] <mug> (12) <nightstand> (23)"]:
        assert p.step(line) == (True,) * 4
        states, ours_only, theirs_only = p.diff()
        assert not states
        assert ours_only == {(12, "INSIDE", 2)}      # the bedroom, where the mug is
        assert theirs_only == {(12, "INSIDE", 1)}    # the kitchen the character left


def test_held_object_room_on_robothow(robothow_init):
    p = _run_same(robothow_init, ["[Walk] <cupboard> (229)", "[Grab] <knife> (2003)"])
    assert p.step("[Walk] <bed> (105)") == (True,) * 4
    _, ours_only, theirs_only = p.diff()
    assert ours_only == {(2003, "INSIDE", 67)} and theirs_only == {(2003, "INSIDE", 201)}


def test_putobjback_inverted(tiny_scene):
    p = _run_same(tiny_scene, ["[Walk] <mug> (12)", "[Grab] <mug> (12)", "[Walk] <sink> (15)"])
    before_theirs = p.o.facts()
    # cannot put it back from here: e2wm fails; the official reports success and changes nothing
    assert p.step("[PutObjBack] <mug> (12)") == (False, True, False, True)
    assert p.o.facts() == before_theirs
    assert p.w.holds(3, 12)
    assert p.step("[Walk] <kitchen_table> (11)") == (True,) * 4
    # can: both put it back, but the official check says no
    assert p.step("[PutObjBack] <mug> (12)") == (True, False, True, True)
    for facts in (world_facts(p.w), p.o.facts()):
        edges = facts[1]
        assert (12, "ON", 11) in edges
        assert not {e for e in edges if e[2] == 12 and e[1].startswith("HOLDS")}


def test_pour_keeps_held(tiny_scene):
    p = _run_same(tiny_scene, ["[Walk] <juice> (14)", "[Grab] <juice> (14)"])
    assert p.step("[Pour] <juice> (14) <mug> (12)") == (True,) * 4
    states, ours_only, theirs_only = p.diff()
    assert not states and not ours_only
    assert theirs_only == {(14, "INSIDE", 12)}
    assert (3, "HOLDS_RH", 14) in world_facts(p.w)[1] and (3, "HOLDS_RH", 14) in p.o.facts()[1]


def test_pour_water_is_the_same(tiny_scene):
    _run_same(tiny_scene, ["[Walk] <water> (16)", "[Grab] <water> (16)", "[Walk] <mug> (12)",
                           "[Pour] <water> (16) <mug> (12)"])


def test_grab_support_tiebreak(tiny_scene):
    tiny_scene["edges"] = [e for e in tiny_scene["edges"]
                           if not (e["from_id"] == 12 and e["relation_type"] == "ON")]
    p = _run_same(tiny_scene, ["[Walk] <fridge> (10)", "[Grab] <mug> (12)"])
    ours = p.w.grab_source(12)
    theirs = p.o.grab_sources()[12]
    assert ours == (10, 3)                       # the lowest-id close object, CLOSE
    assert theirs[1] == "CLOSE" and theirs[0] in {10, 11}


def test_official_crash_is_a_failed_step(tiny_scene):
    tiny_scene["edges"] = [e for e in tiny_scene["edges"]
                           if not (e["from_id"] == 3 and e["relation_type"] == "INSIDE")]
    p = Pair(tiny_scene)
    r = p.w.step("[Walk] <kitchen> (1)")
    assert not r.ok and "no room" in r.message
    with pytest.raises(Exception):
        p.o.step(Oracle.script("[Walk] <kitchen> (1)"))


# ---- random streams --------------------------------------------------------------------------------
def _assert_differential(scenes, seed, min_agree=0.9):
    rep = random_differential(scenes, steps=300, seed=seed)
    assert rep.unexplained == []
    assert rep.steps == 300
    assert rep.agree + sum(rep.explained.values()) == rep.steps
    assert sum(sum(c.values()) for c in rep.by_action.values()) == rep.steps
    assert set(rep.explained) <= set(FIXES)
    assert rep.agree >= min_agree * rep.steps
    assert len(rep.by_action) >= 15      # the stream covers many kinds of action
    return rep


@pytest.mark.slow
def test_random_differential_robothow():
    progs = robothow_programs()
    _assert_differential([(p.name, p.graphs["init_graph"]) for p in (progs[0], progs[40])], 11)


def test_random_differential_tiny_two_agents(tiny_scene, tiny_two):
    _assert_differential([("tiny", tiny_scene), ("tiny2", tiny_two)], 12)


def test_random_differential_procedural():
    procedural = pytest.importorskip("e2wm.world.procedural")
    scenes = [(f"procedural:{s}:2", procedural.generate_apartment(s, n_characters=2))
              for s in (0, 1)]
    _assert_differential(scenes, 13)
