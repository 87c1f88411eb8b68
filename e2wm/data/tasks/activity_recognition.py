"""Activity recognition: from a plan, name the activity (plan generation reversed)."""
from __future__ import annotations

import random

from e2wm.collect.episodes import Episode
from e2wm.data.render import plan_text
from e2wm.data.tasks import assemble

TASK, WEIGHT, SHOTS = "activity_recognition", 0.7, 2


def example(ep: Episode) -> tuple[str, str] | None:
    if ep.kind != "plan" or not ep.success or not ep.activity or not ep.steps:
        return None
    return (f"Given a household activity plan as follows:\n{plan_text(ep.lines, ep.names)}\n"
            f"Q: What is the name of the activity?\nA:", " " + ep.activity)


def build(episodes: list[Episode], rng: random.Random, shots: int = SHOTS,
          weight: float = WEIGHT) -> list[dict]:
    return assemble(TASK, [example(ep) for ep in episodes], rng, shots, weight)
