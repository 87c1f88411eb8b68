"""The natural-language renderer: plan sentences, conditions, goal phrases, items and stories."""
import random
import re

import pytest

from e2wm.data.render import (DROP_VERBS, GRAB_VERBS, ROOM_VERBS, Narrator, condition,
                              conditions_text, goal_phrase, items, noun, plan_text, sentence)
from e2wm.errors import E2WMError
from e2wm.world.script import format_line
from e2wm.world.vocab import ACTION_ARITY

NAMES = {"1": "kitchen", "2": "living_room", "10": "fridge", "11": "milk", "12": "mug",
         "13": "table", "20": "couch", "94": "character", "95": "character"}


@pytest.mark.parametrize("cls, text", [
    ("coffe_maker", "coffee maker"), ("food_apple", "apple"), ("food_food", "food"),
    ("clothes_shirt", "shirt"), ("clothes_pile", "clothes pile"), ("tooth_paste", "toothpaste"),
    ("water_glass", "water glass"), ("cellphone", "cell phone"), ("kitchen_counter", "kitchen counter"),
    ("home_office", "home office"), ("tv", "tv"), ("mug", "mug")])
def test_noun(cls, text):
    assert noun(cls) == text


def test_a_hand_made_plan():
    lines = ["[Walk] <kitchen> (1)", "[Walk] <fridge> (10)", "[Open] <fridge> (10)",
             "[Grab] <milk> (11)", "[Close] <fridge> (10)", "[PutBack] <milk> (11) <table> (13)",
             "[PutIn] <mug> (12) <fridge> (10)", "[SwitchOn] <coffe_maker> (30)",
             "[Sit] <couch> (20)", "[StandUp]"]
    assert plan_text(lines) == (
        "Walk to kitchen. Walk to fridge. Open fridge. Grab milk. Close fridge. Put milk on table. "
        "Put mug in fridge. Switch on coffee maker. Sit on couch. Stand up.")


def test_names_override_the_label():
    assert sentence("[Grab] <food_food> (11)", {"11": "food_apple"}) == "Grab apple."


@pytest.mark.parametrize("action", sorted(ACTION_ARITY))
def test_every_action_has_a_sentence_and_a_story_form(action):
    line = format_line(action, [("mug", 12), ("fridge", 10)][:ACTION_ARITY[action]])
    text = sentence(line)
    assert text[0].isupper() and text.endswith(".") and "{" not in text
    assert ("mug" in text) == (ACTION_ARITY[action] > 0)
    if action not in ("WALK", "RUN", "FIND"):
        story = Narrator(random.Random(0), 1).narrate({"agent": 0, "line": line, "ok": True}, NAMES,
                                                      lambda n: 1)
        assert story.endswith(".") and "{" not in story


@pytest.mark.parametrize("line, text", [
    ("[PutObjBack] <mug> (12)", "Put mug back."), ("[PlugOut] <tv> (5)", "Unplug tv."),
    ("[PutOff] <clothes_shirt> (5)", "Take off shirt."), ("[Release] <mug> (12)", "Drop mug."),
    ("[Pour] <milk> (11) <mug> (12)", "Pour milk into mug."), ("[WakeUp]", "Wake up."),
    ("[LookAt] <tv> (5)", "Look at tv."), ("[Run] <kitchen> (1)", "Run to kitchen.")])
def test_sentence_forms(line, text):
    assert sentence(line) == text


@pytest.mark.parametrize("fact, text", [
    ("<microwave> (3) || ON", "The microwave is on."),
    ("<microwave> (3) || OFF", "The microwave is off."),
    ("<freezer> (4) || OPEN", "The freezer is open."),
    ("<freezer> (4) || CLOSED", "The freezer is closed."),
    ("<tv> (5) || PLUGGED_IN", "The tv is plugged in."),
    ("<tv> (5) || PLUGGED_OUT", "The tv is unplugged."),
    ("<mug> (12) || CLEAN", "The mug is clean."),
    ("<food_apple> (6) || DIRTY", "The apple is dirty."),
    ("<mug> (12) || ON || <kitchen_counter> (13)", "The mug is on the kitchen counter."),
    ("<mug> (12) || INSIDE || <fridge> (10)", "The mug is inside the fridge."),
    ("<freezer> (4) || INSIDE || <dining_room> (7)", "The freezer is in the dining room."),
    ("<character> (94) || SITTING", None), ("<character> (94) || LYING", None),
    ("<character> (94) || HOLDS || <mug> (12)", None),
    ("<character> (94) || INSIDE || <kitchen> (1)", None),
    ("<mug> (12) || CLOSE || <fridge> (10)", None), ("<mug> (12) || FACING || <tv> (5)", None)])
def test_condition(fact, text):
    assert condition(fact) == text


def test_conditions_text_skips_non_conditions():
    facts = ["<microwave> (3) || OFF", "<character> (94) || HOLDS || <mug> (12)",
             "<freezer> (4) || INSIDE || <dining_room> (7)", "<freezer> (4) || CLOSED"]
    assert conditions_text(facts) == ("The microwave is off. The freezer is in the dining room. "
                                      "The freezer is closed.")


@pytest.mark.parametrize("fact, text", [
    ("<television> (27) || ON", "the television is on"),
    ("<mug> (12) || INSIDE || <microwave> (3)", "the mug is inside the microwave"),
    ("<character> (94) || HOLDS || <mug> (12)", "you hold the mug"),
    ("<character> (94) || SITTING || <couch> (20)", "you sit on the couch"),
    ("<character> (94) || SITTING", "you sit"),
    ("<character> (94) || FACING || <television> (27)", "you face the television"),
    ("<mug> (12) || CLOSE || <fridge> (10)", None)])
def test_goal_phrase(fact, text):
    assert goal_phrase(fact) == text


def test_items_in_first_mention_order_without_duplicates_or_characters():
    facts = ["<freezer> (4) || INSIDE || <dining_room> (7)", "<character> (94) || HOLDS || <mug> (12)",
             "<light> (8) || ON", "<light> (9) || OFF", "<freezer> (4) || CLOSED"]
    lines = ["[Walk] <dining_room> (7)", "[Grab] <food_apple> (6)"]
    assert items(facts, lines) == ["freezer", "dining room", "mug", "light", "apple"]


def _story(seed, steps, rooms):
    n = Narrator(random.Random(seed), 3)
    return n, [n.narrate(s, NAMES, rooms.get) for s in steps]


STEPS = [{"agent": 0, "line": "[Walk] <kitchen> (1)", "ok": True},
         {"agent": 0, "line": "[Walk] <mug> (12)", "ok": True},
         {"agent": 0, "line": "[Grab] <mug> (12)", "ok": True},
         {"agent": 1, "line": "[Walk] <couch> (20)", "ok": True},
         {"agent": 0, "line": "[Walk] <living_room> (2)", "ok": True},
         {"agent": 0, "line": "[Drop] <mug> (12)", "ok": True},
         {"agent": 2, "line": "[Open] <fridge> (10)", "ok": False}]
ROOMS = {12: 1, 20: 2}


def test_narrator_walks_between_rooms_and_a_grab_drop_pair():
    n, story = _story(0, STEPS, ROOMS)
    a, b = n.name(0), n.name(1)
    verb = f"({'|'.join(ROOM_VERBS)})"
    assert re.fullmatch(rf"{a} {verb} the kitchen\.", story[0])
    assert story[1] is None   # a walk within the room the agent is in
    assert re.fullmatch(rf"{a} ({'|'.join(GRAB_VERBS)}) the mug\.", story[2])
    assert re.fullmatch(rf"{b} {verb} the living room\.", story[3])   # its first walk names the room
    assert re.fullmatch(rf"{a} {verb} the living room\.", story[4])
    assert re.fullmatch(rf"{a} ({'|'.join(DROP_VERBS)}) the mug\.", story[5])
    assert story[6] is None   # failed lines tell nothing


def test_narrator_put_and_switch_forms():
    n = Narrator(random.Random(0), 1)
    say = lambda line: n.narrate({"agent": 0, "line": line, "ok": True}, NAMES, ROOMS.get)
    who = n.name(0)
    assert say("[PutBack] <mug> (12) <table> (13)") == f"{who} put the mug on the table."
    assert say("[PutIn] <mug> (12) <fridge> (10)") == f"{who} put the mug in the fridge."
    assert say("[SwitchOn] <tv> (5)") == f"{who} switched on the tv."
    assert say("[Open] <fridge> (10)") == f"{who} opened the fridge."


def test_narrator_is_deterministic_under_a_seed():
    (n1, s1), (n2, s2) = _story(7, STEPS * 5, ROOMS), _story(7, STEPS * 5, ROOMS)
    assert n1.people == n2.people and s1 == s2
    assert any(_story(s, STEPS * 5, ROOMS)[1] != s1 for s in range(8, 12))


@pytest.mark.parametrize("seed", range(20))
def test_narrator_names_are_distinct(seed):
    n = Narrator(random.Random(seed), 10)
    assert len({n.name(i) for i in range(10)}) == 10
    assert all(n.pronoun(i) in ("he", "she") for i in range(10))


def test_narrator_rejects_too_many_agents():
    with pytest.raises(E2WMError):
        Narrator(random.Random(0), 1000)
