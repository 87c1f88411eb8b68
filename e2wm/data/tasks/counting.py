"""Counting: from a single-agent story, how many (and which) items are on or in a receptacle at
the end. The places asked about are those the story puts something on or in, counting the moved
objects that end there, so the story alone determines the answer; `CountChooser` spreads the
answers over 0-4."""
from __future__ import annotations

import random

from e2wm.data.prompts import COUNT_INSTRUCTION, Templates, answer_count
from e2wm.data.stories import tell
from e2wm.data.tasks import assemble
from e2wm.data.views import CountChooser, stories

TASK, WEIGHT, SHOTS = "counting", 1.0, 3


def build(episodes, rng: random.Random, templates: Templates, weight: float = WEIGHT,
          shots: int = SHOTS) -> list[dict]:
    chooser, examples, used = CountChooser(rng), [], stories(episodes)
    for ep in used:
        story = tell(ep, rng)
        place = chooser.choose(story)
        examples.append(None if place is None else (
            templates.count_query(story.text(), place.prep, place.receptacle),
            answer_count(place.prep, place.receptacle, place.items)))
    return assemble(TASK, examples, rng, shots, weight, templates, head=COUNT_INSTRUCTION,
                    keys=[ep.key for ep in used])
