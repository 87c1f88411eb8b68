"""Evaluation suites in E2WM's released format. Each module has `SUITES` (suite name -> "gen" or
"mc") and `build(name, eval_episodes, train_episodes, rng, templates) -> rows`; `SUITES` and
`build` here cover them all."""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates
from e2wm.data.suites import activities, babi, exploration, plans
from e2wm.errors import E2WMError

_MODULES = (plans, activities, exploration, babi)
SUITES = {name: kind for m in _MODULES for name, kind in m.SUITES.items()}


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
    for m in _MODULES:
        if name in m.SUITES:
            return m.build(name, eval_episodes, train_episodes, rng, t)
    raise E2WMError(f"unknown evaluation suite {name!r}; known: {', '.join(SUITES)}")
