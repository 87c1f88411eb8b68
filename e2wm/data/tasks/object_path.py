"""Object path tracking: from a story, the rooms a carried object appeared in, in order."""
from __future__ import annotations

import random

from e2wm.collect.episodes import Episode
from e2wm.data.stories import tell
from e2wm.data.tasks import assemble

TASK, WEIGHT, SHOTS = "object_path", 1.0, 2


def example(ep: Episode, rng: random.Random) -> tuple[str, str] | None:
    if ep.kind != "explore":
        return None
    story = tell(ep, rng)
    objects = sorted(o for o in story.paths if o not in story.ambiguous)
    if not objects:
        return None
    obj = rng.choice(objects)
    return (f"{story.text()}\nQuestion: What is the order of the rooms where the {obj} appeared?\n"
            f"Answer:", " " + ", ".join(story.paths[obj]))


def build(episodes: list[Episode], rng: random.Random, shots: int = SHOTS,
          weight: float = WEIGHT) -> list[dict]:
    return assemble(TASK, [example(ep, rng) for ep in episodes], rng, shots, weight)
