"""Evaluation suites in E2WM's released format. Each module has `SUITES` (suite name -> its declared
`SuiteSpec`: kind, metric, normalisation, world) and `build(name, eval_episodes, train_episodes, rng,
templates) -> rows`; `SPECS`, `SUITES` (name -> "gen" or "mc") and `build` here cover them all."""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates
from e2wm.data.suites import activities, babi, exploration, plans
from e2wm.errors import E2WMError

_MODULES = (plans, activities, exploration, babi)
SPECS = {name: spec for m in _MODULES for name, spec in m.SUITES.items()}
SUITES = {name: spec.kind for name, spec in SPECS.items()}


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
    for m in _MODULES:
        if name in m.SUITES:
            return m.build(name, eval_episodes, train_episodes, rng, t)
    raise E2WMError(f"unknown evaluation suite {name!r}; known: {', '.join(SUITES)}")
