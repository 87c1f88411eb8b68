"""Exploration-story suites (E2WM sets 9-11): counting QA ("How many items are there on the desk?",
options 0-4), object path tracking (the rooms an object appeared in, generated) and object location
QA ("Where was the hat before the bedroom?", six room options). Stories come from `tell`; every
answer is read from the story's record, so it agrees with the text. Questions avoid nouns that name
several nodes of the episode."""
from __future__ import annotations

import random

from e2wm.data.render import ROOMS, noun
from e2wm.data.stories import tell
from e2wm.data.suites.options import gen_row, mc_row, shots
from e2wm.errors import E2WMError

SUITES = {"count_qa": "mc", "obj_path": "gen", "obj_location": "mc"}
SHOTS = {"count_qa": 5, "obj_path": 2, "obj_location": 2}
OPTIONS = {"count_qa": 5, "obj_location": 6}
DIGITS = ("0", "1", "2", "3", "4")
ROOM_NOUNS = sorted({noun(r) for r in ROOMS})


def explorations(episodes) -> list:
    return [e for e in episodes if e.kind == "explore" and e.steps]


def before(path) -> list[tuple[str, str]]:
    """(room, the room before it) for the rooms a path enters once."""
    return [(r, path[i - 1]) for i, r in enumerate(path) if i and path.count(r) == 1]


def questions(name: str, story, ep) -> list[tuple[str, str, list]]:
    """Every (query, answer, distractors) suite `name` asks about one story."""
    text, clear = story.text(), lambda n: n not in story.ambiguous
    if name == "count_qa":
        places = set()   # (relation, receptacle) of every place an object left or reached
        for m in (m for s in ep.steps for m in s["moves"]):
            for loc in (m["from"], m["to"]):
                if loc["relation"] in ("ON", "INSIDE"):
                    places.add((loc["relation"], noun(ep.names[str(loc["target"])])))
        out = []
        for rel, target in sorted(places):
            n = sum(v == (rel.lower(), target) for v in story.final.values())
            if clear(target) and n < len(DIGITS):
                where = "on" if rel == "ON" else "in"
                out.append((f"Q: {text} How many items are there {where} the {target}?\nA:",
                            str(n), DIGITS))
        return out
    paths = {o: p for o, p in sorted(story.paths.items()) if clear(o)}
    if name == "obj_path":
        return [(f"{text}\nQuestion: What is the order of the rooms where the {o} appeared?\nAnswer:",
                 ", ".join(p), []) for o, p in paths.items()]
    return [(f"{text}\nQuestion: Where was the {o} before the {r}?\nAnswer:", prev, ROOM_NOUNS)
            for o, p in paths.items() for r, prev in before(p)]


def build_from(ask, kinds, shot_counts, options, name, eval_episodes, train_episodes, rng):
    """Rows of a story suite: `ask(name, story, ep, rng)` lists an episode's (query, answer,
    distractors); each eval episode's questions share exemplars, one question from each of
    `shot_counts[name]` training stories."""
    train = explorations(train_episodes)
    rows = []
    for ep in explorations(eval_episodes):
        asked = ask(name, tell(ep, rng), ep, rng)
        if not asked:
            continue
        exemplars = []
        for e in shots(train, shot_counts[name], rng):
            if qs := ask(name, tell(e, rng), e, rng):
                q, a, _ = rng.choice(qs)
                exemplars.append(f"{q} {a}")
        for query, answer, distractors in asked:
            if kinds[name] == "gen":
                rows.append(gen_row(exemplars, query, answer))
                continue
            try:
                rows.append(mc_row(exemplars, query, answer, distractors, rng, options[name]))
            except E2WMError:
                continue
    return rows


def build(name: str, eval_episodes, train_episodes, rng: random.Random) -> list[dict]:
    return build_from(lambda n, story, ep, _: questions(n, story, ep), SUITES, SHOTS, OPTIONS,
                      name, eval_episodes, train_episodes, rng)
