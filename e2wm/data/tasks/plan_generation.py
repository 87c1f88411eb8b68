"""Plan generation: from an activity, the items and their conditions, write the plan."""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates
from e2wm.data.tasks import assemble
from e2wm.data.views import is_plan, plan_of, plan_parts

TASK, WEIGHT, SHOTS = "plan_generation", 1.0, 2


def build(episodes, rng: random.Random, templates: Templates, weight: float = WEIGHT,
          shots: int = SHOTS) -> list[dict]:
    episodes = list(episodes)
    examples = [(templates.plan_query(ep.activity, *plan_parts(ep)), plan_of(ep)) if is_plan(ep) else None
                for ep in episodes]
    return assemble(TASK, examples, rng, shots, weight, templates, keys=[ep.key for ep in episodes])
