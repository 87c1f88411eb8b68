"""Object path tracking: from a multi-agent story, the rooms a carried object appeared in, in
order. As in E2WM, a path runs through 2-5 rooms without a revisit: the story is told up to the
point where the asked object would revisit a room or enter a sixth."""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates
from e2wm.data.stories import tell
from e2wm.data.tasks import assemble
from e2wm.data.views import explorations

TASK, WEIGHT, SHOTS = "object_path", 1.0, 2


def build(episodes, rng: random.Random, templates: Templates, weight: float = WEIGHT,
          shots: int = SHOTS) -> list[dict]:
    examples, used = [], explorations(episodes)
    for ep in used:
        story = tell(ep, rng)
        paths = story.short_paths()
        if not paths:
            examples.append(None)
            continue
        obj = rng.choice(sorted(paths))
        cut, path = paths[obj]
        examples.append((templates.path_query(story.text(cut), obj), ", ".join(path)))
    return assemble(TASK, examples, rng, shots, weight, templates, keys=[ep.key for ep in used])
