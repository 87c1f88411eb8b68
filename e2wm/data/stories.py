"""Stories: an exploration episode told as bAbI-style sentences, with what the story makes true.

`tell` replays the episode in its world and asks the `Narrator` for a sentence per step; alongside
the sentences it records where the agents and the moved objects are after each sentence, where the
moved objects end up, and the rooms each carried object passed through. Questions built on a story
(counting, object paths) read their answers from here, so they always agree with the text.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from e2wm.collect.episodes import Episode
from e2wm.collect.explore import explore_scene, location
from e2wm.data.render import Narrator, noun
from e2wm.errors import E2WMError
from e2wm.world.world import World

_RELATIONS = {"ON": "on", "INSIDE": "inside", "HELD": "held", None: "in room"}


@dataclass
class Story:
    sentences: list[str]                      # narrated sentences, in order
    agents: list[str]                         # agent i's name is agents[i]
    timeline: list[dict]                      # the state after each sentence (see `tell`)
    final: dict[str, tuple[str, str | None]]  # moved object -> (relation, target) at the end
    paths: dict[str, list[str]]               # moved object -> the rooms it appeared in, in order
    ambiguous: set[str]                       # nouns naming more than one node of the episode

    def text(self) -> str:
        return " ".join(self.sentences)


def tell(ep: Episode, rng: random.Random) -> Story:
    """The story of an exploration episode; names and verb synonyms are drawn from `rng`.

    timeline[k], the state after sentence k: {"agent_room": {name: room}} for the agents whose room
    the story has told, {"object_room": {object: room}} and {"holding": {name: [objects]}} for the
    objects that move in the episode. final: ("on" | "inside", receptacle), ("held", agent name) or
    ("in room", room). paths: an object's room when first moved, then each room it was carried
    into, repeats collapsed; only objects whose room changed. Everything is keyed by noun, so a
    noun in `ambiguous` may name several nodes (questions avoid those).
    """
    if ep.kind != "explore":
        raise E2WMError(f"episode {ep.key}: only explore episodes have stories, got {ep.kind!r}")
    w = World.from_dict(explore_scene(ep.scene, ep.agents), ep.scene)
    narrator = Narrator(rng, ep.agents)
    agents = [narrator.name(i) for i in range(ep.agents)]
    # An episode names the rooms its moves touch; a walk can enter any room of the scene.
    names = {**{str(r): w.scene.class_name[r] for r in w.scene.rooms}, **ep.names}

    def said(n):
        return noun(names[str(n)])

    moved = sorted({m["object"] for s in ep.steps for m in s.get("moves", ())})
    sentences, timeline = [], []
    for s in ep.steps:
        text = narrator.narrate(s, names, w.room_of)
        w.step(s["line"], s["agent"])
        if text is None:
            continue
        sentences.append(text)
        timeline.append({
            "agent_room": {agents[i]: said(r) for i, r in enumerate(narrator.room)
                           if r is not None},
            "object_room": {said(o): said(w.room_of(o)) for o in moved if w.room_of(o) is not None},
            "holding": {agents[i]: sorted(said(o) for o in w.held(c)) for i, c in
                        enumerate(w.agents[:ep.agents])}})

    def target(loc):
        if loc["relation"] == "HELD":
            return agents[w.agents.index(loc["target"])]
        n = loc["target"] if loc["relation"] else loc["room"]
        return None if n is None else said(n)

    final = {}
    for o in moved:
        loc = location(w, o)
        final[said(o)] = (_RELATIONS[loc["relation"]], target(loc))

    rooms = defaultdict(list)
    for s in ep.steps:
        for m in s.get("moves", ()):
            seq = rooms[m["object"]]
            for r in (m["from"]["room"], m["to"]["room"]):
                if r is not None and (not seq or seq[-1] != r):
                    seq.append(r)
    paths = {said(o): [said(r) for r in seq] for o, seq in rooms.items() if len(seq) > 1}

    nodes = defaultdict(set)
    for i, cls in ep.names.items():
        nodes[noun(cls)].add(i)
    return Story(sentences, agents, timeline, final, paths,
                 {n for n, ids in nodes.items() if len(ids) > 1})
