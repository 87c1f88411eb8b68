"""Held-out slices of the training tasks: for each task, up to `heldout_rows` rows of the training
split's episodes that are never trained on, written as the evaluation suite `heldout_<task>` in the
task's own training format (the same prompts, exemplars drawn from other held-out episodes).

The unit held out is the episode, shared by every task that reads it: a held-out episode gives no
training row to any task (plan generation and activity recognition read the same plans, and the plan
one task answers is the other's question), and its rows appear in no training row's exemplars. Plans
go together with every plan of the same text or the same question (activity, items and conditions),
from whatever apartment: no held-out plan or question is trained on through another episode; and a
group is passed over when holding it out would leave an activity without a training plan (the split's
promise that every seen activity is trained on stands). At most 1/`CAP` of a task's episodes are held
out, so a small collection still trains. Selection is a pure function of (episodes, seed): units in a
seeded order, taken while they fit.
"""
from __future__ import annotations

import random
from collections import Counter

from e2wm.data.eval_format import SuiteSpec
from e2wm.data.views import is_plan, plan_of, plan_parts

PREFIX = "heldout_"
CAP = 4
# how `e2wm eval` scores each task's held-out suite: plans by ROUGE (and run for executability, as the
# plan_gen suites), paths by E2WM's contiguous LCS, single answers (an activity name, a count sentence)
# by exact match of the first generated line
SPECS = {"plan_generation": SuiteSpec("gen", "rouge", world=True),
         "activity_recognition": SuiteSpec("gen", "exact_match"),
         "counting": SuiteSpec("gen", "exact_match"),
         "object_path": SuiteSpec("gen", "lcs")}
_PLANS = "episode, with every plan of the same text or question"
UNIT = {"plan_generation": _PLANS, "activity_recognition": _PLANS, "counting": "episode", "object_path": "episode"}


def suite_name(task: str) -> str:
    return PREFIX + task


def choose(episodes, eligible: dict[str, set[str]], n: int, seed: int) -> dict[str, set[str]]:
    """Task -> the keys of its held-out episodes (among `eligible[task]`, the training episodes that
    give the task a row). Tasks whose eligible episodes meet choose together (one family, one
    selection), so an episode is held out of every task that reads it."""
    if n <= 0:
        return {t: set() for t in eligible}
    by_key = {e.key: e for e in episodes}
    families: list[tuple[list[str], set[str]]] = []
    for task, keys in eligible.items():
        meets = [i for i, f in enumerate(families) if f[1] & keys]
        merged = ([t for i in meets for t in families[i][0]] + [task],
                  set(keys).union(*(families[i][1] for i in meets)))
        families = [f for i, f in enumerate(families) if i not in meets] + [merged]
    left = Counter(e.activity for e in episodes if is_plan(e))   # training plans per activity
    held: dict[str, set[str]] = {}
    for tasks, keys in families:
        target = min(n, min(len(eligible[t]) for t in tasks) // CAP)
        units = _units([by_key[k] for k in sorted(keys)])
        rng = random.Random(f"heldout:{seed}:{'+'.join(sorted(tasks))}")
        chosen: set[str] = set()
        for group in rng.sample(units, len(units)):
            need = Counter(by_key[k].activity for k in group if is_plan(by_key[k]))
            if len(chosen) + len(group) > target or any(left[a] - n < 1 for a, n in need.items()):
                continue
            left.subtract(need)
            chosen.update(group)
        for t in tasks:
            held[t] = chosen & eligible[t]
    return held


def _units(episodes) -> list[list[str]]:
    """The episodes (keys, in order) that are held out together: a plan with every other plan of the same
    text (the question of activity recognition, the answer of plan generation) or the same question of plan
    generation (activity, items and conditions); any other episode alone."""
    parent = {e.key: e.key for e in episodes}

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k
    first: dict = {}
    for e in episodes:
        if is_plan(e):
            items, conditions = plan_parts(e)
            for link in (("plan", plan_of(e)), ("ask", e.activity, tuple(items), tuple(conditions))):
                parent[root(e.key)] = root(first.setdefault(link, e.key))
    groups: dict[str, list[str]] = {}
    for e in episodes:
        groups.setdefault(root(e.key), []).append(e.key)
    return list(groups.values())
