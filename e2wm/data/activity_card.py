"""The card's activity table: every activity of the library and its held-out set, with its full goal
(the class-level specs the planner poses), and what the build made of it.

A plan whose goal lacks one of its activity's specs was posed under an older library (a goal the
planner once could not solve, dropped): the table counts such plans per activity, and the card's
health section names the activities that have any.
"""
from __future__ import annotations

from e2wm.world.activities import ALL_ACTIVITIES, UNSEEN_NAMES

# What the build made of an activity, as the table says it.
TRAINED, UNSEEN, NO_TRAINING_PLAN, NO_PLAN, NOT_COLLECTED = (
    "trained", "unseen (evaluation only)", "no training plan", "no plan", "not in this collection")


def activity_rows(plan_eps, training_eps, unseen, chosen) -> list[dict]:
    """One row per activity of `ALL_ACTIVITIES`, in collection order.

    plan_eps: the usable plans of the whole build; training_eps: those trained on; unseen: the
    split's held-out activity names; chosen: the collection's activity subset, or None (all)."""
    by_name: dict[str, list] = {}
    for e in plan_eps:
        by_name.setdefault(e.activity, []).append(e)
    trained = {e.activity for e in training_eps}
    n_train = {}
    for e in training_eps:
        n_train[e.activity] = n_train.get(e.activity, 0) + 1
    rows = []
    for a in ALL_ACTIVITIES:
        mine = by_name.get(a.name, [])
        if chosen is not None and a.name not in chosen:
            role = NOT_COLLECTED
        elif a.name in unseen:
            role = UNSEEN
        elif a.name in trained:
            role = TRAINED
        else:
            role = NO_TRAINING_PLAN if mine else NO_PLAN
        rows.append({"activity": a.name, "set": "held out" if a.name in UNSEEN_NAMES else "library",
                     "goal": list(a.goals), "plans": len(mine), "training_plans": n_train.get(a.name, 0),
                     "partial_goal_plans": sum(bool(a.unmet_specs(e.goals)) for e in mine), "build": role})
    return rows


def card_lines(rows: list[dict]) -> list[str]:
    """The card's section: one table row per activity, its goal specs joined by '; '."""
    lib = sum(r["set"] == "library" for r in rows)
    lines = ["## Activities and their goals", "",
             f"Every activity of the library ({lib}) and of its held-out set ({len(rows) - lib}), with the "
             "full goal its plans are posed with (class-level specs; `a|b` binds either class). Plans: "
             "usable plans in this build; partial: plans posed with only part of that goal (an older "
             "library's).", "",
             "| activity | set | goal | plans | training plans | partial | in this build |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['activity']} | {r['set']} | {_cell('; '.join(r['goal']))} | {r['plans']} | "
              f"{r['training_plans']} | {r['partial_goal_plans']} | {r['build']} |" for r in rows]
    return lines


def partial_goal_line(rows: list[dict]) -> str:
    """The health line: plans posed with part of their goal, by activity (none, normally)."""
    bad = [f"{r['activity']} {r['partial_goal_plans']}" for r in rows if r["partial_goal_plans"]]
    total = sum(r["partial_goal_plans"] for r in rows)
    return (f"- plans posed with only part of their activity's goal: {total}"
            + (f" ({', '.join(bad)}; collected under an older activity library)" if bad else ""))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
