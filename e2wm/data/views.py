"""What tasks and suites read off episodes, each asked in one place: which episodes are usable
plans, multi-agent explorations or single-agent stories; a plan's given items and conditions;
which counting question a story answers; the (activity, plan) pair the leak guard compares."""
from __future__ import annotations

import random
from collections import Counter

from e2wm.collect.episodes import Episode
from e2wm.data.prompts import COUNT_OPTIONS
from e2wm.data.render import ROOMS, condition, items, noun, plan_text
from e2wm.data.stories import Place, Story
from e2wm.world.facts import Fact
from e2wm.world.script import parse_line

ROOM_NOUNS = frozenset(noun(r) for r in ROOMS)


def goal_objects(ep: Episode) -> set[int]:
    """The non-room, non-character nodes the goal facts name."""
    return {n for t in ep.goals for n in Fact.parse(t).nodes()
            if ep.names.get(str(n), "character") != "character" and not _is_room(ep, n)}


def names_goal_objects(ep: Episode) -> bool:
    """Whether the plan's lines name every goal object."""
    named = {i for line in ep.lines for i in parse_line(line).ids}
    return goal_objects(ep) <= named


def is_plan(ep: Episode) -> bool:
    """A successful plan with an activity that names each of its goal objects."""
    return (ep.kind == "plan" and ep.success and bool(ep.activity) and bool(ep.steps)
            and names_goal_objects(ep))


def plans(episodes) -> list[Episode]:
    return [e for e in episodes if is_plan(e)]


def explorations(episodes) -> list[Episode]:
    """Multi-agent explorations: object paths and the bAbI-style suites."""
    return [e for e in episodes if e.kind == "explore" and e.steps and e.agents > 1]


def stories(episodes) -> list[Episode]:
    """Single-agent explorations: the counting stories."""
    return [e for e in episodes if e.kind == "explore" and e.steps and e.agents == 1]


def plan_parts(ep: Episode) -> tuple[list[str], list[str]]:
    """(given items, condition sentences): the objects of the conditions and the goal, never the
    plan's own detours."""
    return (items(ep.conditions + ep.goals, names=ep.names),
            [c for c in (condition(t, ep.names) for t in ep.conditions) if c])


def plan_of(ep: Episode) -> str:
    return plan_text(ep.lines, ep.names)


def pair(ep: Episode) -> tuple[str, str]:
    """The (activity, plan) pair the leak guard compares."""
    return ep.activity, plan_of(ep)


class CountChooser:
    """Picks each story's counting question so the answers spread over 0-4: among a story's
    places, the one whose count has been chosen least so far (ties drawn with `rng`). Training
    and the suite each run one chooser, so both get the same spread."""

    def __init__(self, rng: random.Random):
        self.rng, self.seen = rng, Counter()

    def choose(self, story: Story) -> Place | None:
        places = [p for p in story.places if len(p.items) < len(COUNT_OPTIONS)]
        if not places:
            return None
        low = min(self.seen[len(p.items)] for p in places)
        place = self.rng.choice([p for p in places if self.seen[len(p.items)] == low])
        self.seen[len(place.items)] += 1
        return place


def _is_room(ep: Episode, n: int) -> bool:
    return ep.names.get(str(n)) in ROOMS
