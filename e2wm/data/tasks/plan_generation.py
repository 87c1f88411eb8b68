"""Plan generation: from an activity, the items and their conditions, write the plan."""
from __future__ import annotations

import random

from e2wm.collect.episodes import Episode
from e2wm.data.render import conditions_text, items, plan_text
from e2wm.data.tasks import assemble

TASK, WEIGHT, SHOTS = "plan_generation", 1.0, 2


def example(ep: Episode) -> tuple[str, str] | None:
    if ep.kind != "plan" or not ep.success or not ep.activity or not ep.steps:
        return None
    given = ", ".join(items(ep.conditions, ep.lines, ep.names))
    question = " ".join(filter(None, (f"Q: How to {ep.activity}? Given items include {given}.",
                                      conditions_text(ep.conditions, ep.names))))
    return f"{question}\nA:", " " + plan_text(ep.lines, ep.names)


def build(episodes: list[Episode], rng: random.Random, shots: int = SHOTS,
          weight: float = WEIGHT) -> list[dict]:
    return assemble(TASK, [example(ep) for ep in episodes], rng, shots, weight)
