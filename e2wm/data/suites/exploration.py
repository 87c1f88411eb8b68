"""Exploration-story suites (E2WM sets 9-11): counting QA over single-agent stories ("How many items
are there on the desk?", options "0".."4" in order, answers spread by `CountChooser`), object
path tracking over multi-agent stories (2-5 rooms, generated) and object location QA ("Where was
the hat before / after the bedroom?", the options being the rooms the story names, in one fixed
order). Every answer is read from the story's record, so it agrees with the text."""
from __future__ import annotations

import random

from e2wm.data.eval_format import SuiteSpec
from e2wm.data.prompts import COUNT_OPTIONS, Templates
from e2wm.data.render import ROOM_NAMES, noun
from e2wm.data.stories import tell
from e2wm.data.suites.options import gen_row, mc_row, shots
from e2wm.data.views import CountChooser, explorations, stories

SUITES = {"count_qa": SuiteSpec("mc", "accuracy", "ln"), "obj_path": SuiteSpec("gen", "lcs"),
          "obj_location": SuiteSpec("mc", "accuracy", "ln")}
SHOTS = {"count_qa": 5, "obj_path": 2, "obj_location": 2}
ROOM_ORDER = tuple(noun(r) for r in ROOM_NAMES)   # the fixed order of object-location options
MAX_ROOMS, MIN_ROOMS = 6, 3


def before(path) -> list[tuple[str, str]]:
    """(room, the room before it) along a path without revisits."""
    return [(r, path[i - 1]) for i, r in enumerate(path) if i]


def after(path) -> list[tuple[str, str]]:
    return [(r, path[i + 1]) for i, r in enumerate(path[:-1])]


def questions(name: str, story, t: Templates, chooser: CountChooser | None = None):
    """Every (query, answer, options, question) suite `name` asks about one story."""
    if name == "count_qa":
        place = chooser.choose(story)
        if place is None:
            return []
        query = t.count_query(story.text(), place.prep, place.receptacle)
        return [(query, str(len(place.items)), list(COUNT_OPTIONS), query)]
    out = []
    for obj, (cut, path) in story.short_paths().items():
        text = story.text(cut)
        if name == "obj_path":
            out.append((t.path_query(text, obj), ", ".join(path), None, None))
            continue
        named = set(story.timeline[cut - 1]["rooms"])
        options = [r for r in ROOM_ORDER if r in named][:MAX_ROOMS]
        for when, pairs in (("before", before(path)), ("after", after(path))):
            for room, answer in pairs:
                if len(options) >= MIN_ROOMS and answer in options:
                    query = t.location_query(text, obj, when, room)
                    out.append((query, answer, options, query))
    return out


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
    source = stories if name == "count_qa" else explorations
    counts = (CountChooser(rng), CountChooser(rng)) if name == "count_qa" else (None, None)
    train = source(train_episodes)
    rows = []
    for ep in source(eval_episodes):
        asked = questions(name, tell(ep, rng), t, counts[0])
        if not asked:
            continue
        exemplars = []
        for e in shots(train, SHOTS[name], rng):
            if qs := questions(name, tell(e, rng), t, counts[1]):
                query, answer, *_ = rng.choice(qs)
                exemplars.append(t.solved(name, query, answer))
        for query, answer, options, question in asked:
            if SUITES[name].kind == "gen":
                rows.append(gen_row(t, name, exemplars, query, answer, episode=ep.key))
            else:
                rows.append(mc_row(t, name, exemplars, query, answer, options, question, episode=ep.key))
    return rows
