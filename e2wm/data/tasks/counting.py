"""Counting: from a story, how many (and which) items are on or in a receptacle at the end.

The receptacles asked about are those the story puts something on or in; the items counted are the
objects moved in the story that end there, so the story alone determines the answer. A share of
questions ask about a receptacle whose items were all taken away again (the answer "no item").
"""
from __future__ import annotations

import random

from e2wm.collect.episodes import Episode
from e2wm.data.render import noun
from e2wm.data.stories import tell
from e2wm.data.tasks import assemble

TASK, WEIGHT, SHOTS = "counting", 1.0, 3
INSTRUCTION = ("Given a sequence of actions in a house, and a question about what items are "
               "located in a specific place. Answer the number of items and list the items.")
EMPTY_SHARE = 0.25   # how often an empty receptacle is asked about, when the story has one
_PREP = {"ON": "on", "INSIDE": "in"}


def answer(prep: str, receptacle: str, things: list[str]) -> str:
    place = f"{prep} the {receptacle}"
    if not things:
        return f"There is no item {place}."
    if len(things) == 1:
        return f"There is one item {place}. It is the {things[0]}."
    the = [f"the {t}" for t in things]
    listed = " and ".join(the) if len(the) == 2 else ", ".join(the[:-1]) + ", and " + the[-1]
    return f"There are {len(things)} items {place}. They are {listed}."


def example(ep: Episode, rng: random.Random) -> tuple[str, str] | None:
    if ep.kind != "explore":
        return None
    story = tell(ep, rng)
    moves = [m for s in ep.steps for m in s.get("moves", ())]
    end = {m["object"]: (m["to"]["relation"], m["to"]["target"]) for m in moves}
    spots = {(m["to"]["relation"], m["to"]["target"]) for m in moves
             if m["to"]["relation"] in _PREP}
    said = {}   # (relation, receptacle id) -> the nouns of the moved objects that end there
    for spot in sorted(spots):
        names = sorted(noun(ep.names[str(o)]) for o, at in end.items() if at == spot)
        if not {noun(ep.names[str(spot[1])]), *names} & story.ambiguous:
            said[spot] = names
    if not said:
        return None
    empty = [s for s, names in said.items() if not names]
    full = [s for s, names in said.items() if names]
    pool = empty if empty and (not full or rng.random() < EMPTY_SHARE) else full
    rel, target = rng.choice(pool)
    prep, receptacle = _PREP[rel], noun(ep.names[str(target)])
    return (f"Q: {story.text()} How many items are there {prep} the {receptacle}?\nA:",
            " " + answer(prep, receptacle, said[rel, target]))


def build(episodes: list[Episode], rng: random.Random, shots: int = SHOTS,
          weight: float = WEIGHT) -> list[dict]:
    return assemble(TASK, [example(ep, rng) for ep in episodes], rng, shots, weight,
                    head=INSTRUCTION)
