"""Stories: an exploration episode told as bAbI-style sentences, with what the story makes true.

`tell` reads the episode's recorded events only (each step's line, the agent's room after it and
the objects it moved; `e2wm.collect.verify` checks them against a re-execution before a dataset
is built). Alongside the sentences it records where the agents and the moved objects are after
each sentence, where the moved objects end up and which rooms each carried object entered, so the
questions asked of a story (counting, object paths, bAbI-style) always agree with its text.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from e2wm.collect.episodes import Episode
from e2wm.data.render import Narrator, noun
from e2wm.errors import E2WMError

_PREP = {"ON": "on", "INSIDE": "in"}


@dataclass
class Place:
    """A receptacle and what the story leaves on or in it."""
    prep: str                 # "on" | "in"
    receptacle: str           # its noun
    items: list[str]          # nouns of the moved objects that end there, sorted


@dataclass
class Story:
    sentences: list[str]                      # narrated sentences, in order
    agents: list[str]                         # agent i's name is agents[i]
    timeline: list[dict]                      # the state after each sentence (see `tell`)
    entries: dict[str, list[tuple[int, str]]]  # moved object -> (sentence, room) each time it enters one
    places: list[Place]                       # every receptacle a move touched, unambiguous ones only
    ambiguous: set[str] = field(default_factory=set)   # nouns naming more than one node of the episode

    def text(self, upto: int | None = None) -> str:
        """The story, or its first `upto` sentences."""
        return " ".join(self.sentences[:upto])

    def path(self, obj: str, upto: int | None = None) -> list[str]:
        """The rooms `obj` appeared in, in order, within the first `upto` sentences."""
        return [r for k, r in self.entries.get(obj, ()) if upto is None or k < upto]

    @property
    def paths(self) -> dict[str, list[str]]:
        """Moved object -> its rooms over the whole story, for objects that changed room."""
        return {o: p for o in sorted(self.entries) if len(p := self.path(o)) > 1}

    def short_paths(self, low: int = 2, high: int = 5) -> dict[str, tuple[int, list[str]]]:
        """Object -> (cut, path): the story's first `cut` sentences take it through `low`..`high`
        rooms without a revisit, as far as it goes before it would revisit or pass `high`."""
        out = {}
        for o in sorted(self.entries):
            if o in self.ambiguous:
                continue
            seen, cut = [], len(self.sentences)
            for k, room in self.entries[o]:
                if room in seen or len(seen) == high:
                    cut = k
                    break
                seen.append(room)
            if len(seen) >= low:
                out[o] = (cut, seen)
        return out


def tell(ep: Episode, rng: random.Random) -> Story:
    """The story of an exploration episode; names and verb synonyms are drawn from `rng`.

    timeline[k], the state after sentence k: {"agent_room": {name: room}} for the agents whose
    room the story has told, {"object_room": {object: room}} and {"holding": {name: [objects]}}
    for the objects that moved so far, {"rooms": [...]} the rooms named so far. An agent's first
    told action away from a walk is preceded by "<name> was in the <room>.". entries: an object's room when first moved, then each
    room it is carried into (consecutive repeats collapsed), with the sentence that tells it.
    places: per receptacle that a move touched, the moved objects that end on or in it; a place is
    left out when its noun or the noun of any object that reached or left it names more than one
    node (the reader could not tell them apart), or when things went both on and in it, so a
    count read from it is never ambiguous.
    """
    if ep.kind != "explore":
        raise E2WMError(f"episode {ep.key}: only explore episodes have stories, got {ep.kind!r}")
    narrator = Narrator(rng, ep.agents)
    agents = [narrator.name(i) for i in range(ep.agents)]
    chars = sorted(int(i) for i, c in ep.names.items() if c == "character")[:ep.agents]
    names = ep.names

    def said(n):
        if str(n) not in names:
            raise E2WMError(f"episode {ep.key}: node {n} is not in its names")
        return noun(names[str(n)])

    where: dict[int, dict] = {}      # moved object -> its location after the latest move
    named: set[str] = set()          # rooms the story has named so far
    sentences, timeline = [], []
    entries: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for k, s in enumerate(ep.steps):
        if "room" not in s or "moves" not in s:
            raise E2WMError(f"episode {ep.key}: step {k} lacks its recorded room or moves "
                            f"(collected by an older engine; collect it again)")
        agent = s["agent"]
        unknown = narrator.room[agent] is None
        text = narrator.narrate(s, names, lambda _, room=s["room"]: room)
        if text is not None and unknown and narrator.room[agent] is None:
            # The first thing told of this agent happens where it started: say where that is,
            # so every room an object path names has been named by the story.
            narrator.room[agent] = s["room"]
            sentences.append(f"{agents[agent]} was in the {said(s['room'])}.")
            timeline.append(_state(agents, narrator, where, said, chars, named))
        for m in s["moves"]:
            where[m["object"]] = m["to"]
        if text is None:
            continue
        sentences.append(text)
        n = len(sentences) - 1
        for m in s["moves"]:
            seq = entries[said(m["object"])]
            for r in (m["from"]["room"], m["to"]["room"]):
                if r is not None and (not seq or seq[-1][1] != said(r)):
                    seq.append((n, said(r)))
        timeline.append(_state(agents, narrator, where, said, chars, named))

    nodes = defaultdict(set)
    for i, cls in names.items():
        nodes[noun(cls)].add(i)
    ambiguous = {n for n, ids in nodes.items() if len(ids) > 1}
    return Story(sentences, agents, timeline, dict(entries), _places(ep, where, said, ambiguous),
                 ambiguous)


def _state(agents, narrator, where, said, chars, named) -> dict:
    """The state after the latest sentence (see `tell`)."""
    holding = defaultdict(list)
    for o, loc in where.items():
        if loc["relation"] == "HELD":
            holding[agents[chars.index(loc["target"])]].append(said(o))
    agent_room = {agents[i]: said(r) for i, r in enumerate(narrator.room) if r is not None}
    named.update(agent_room.values())
    return {"agent_room": agent_room,
            "object_room": {said(o): said(loc["room"]) for o, loc in where.items()
                            if loc["room"] is not None},
            "holding": {a: sorted(holding[a]) for a in agents},
            "rooms": sorted(named)}


def _places(ep: Episode, where: dict, said, ambiguous: set) -> list[Place]:
    touched: dict[tuple[str, int], set[int]] = defaultdict(set)   # (relation, receptacle) -> objects
    for m in (m for s in ep.steps for m in s["moves"]):
        for loc in (m["from"], m["to"]):
            if loc["relation"] in _PREP:
                touched[loc["relation"], loc["target"]].add(m["object"])
    out = []
    for (rel, target), objects in sorted(touched.items()):
        both = sum((r, target) in touched for r in _PREP) > 1   # things both on and in it
        if both or {said(target), *map(said, objects)} & ambiguous:
            continue
        items = sorted(said(o) for o, loc in where.items()
                       if (loc["relation"], loc["target"]) == (rel, target))
        out.append(Place(_PREP[rel], said(target), items))
    return out
