"""Activity recognition: from a plan, name the activity (plan generation reversed)."""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates
from e2wm.data.tasks import assemble
from e2wm.data.views import is_plan, plan_of

TASK, WEIGHT, SHOTS = "activity_recognition", 0.7, 2


def build(episodes, rng: random.Random, templates: Templates, weight: float = WEIGHT,
          shots: int = SHOTS) -> list[dict]:
    episodes = list(episodes)
    examples = [(templates.recognition_query(plan_of(ep)), ep.activity) if is_plan(ep) else None
                for ep in episodes]
    return assemble(TASK, examples, rng, shots, weight, templates, keys=[ep.key for ep in episodes])
