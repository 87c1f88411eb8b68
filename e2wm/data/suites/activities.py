"""Activity suites (E2WM sets 5-8), four options each: activity recognition (plan -> activity name),
activity inference (goal state -> activity), housework QA (an item an activity uses, among items
it does not) and negation housework QA (an item it does not use, among items it uses)."""
from __future__ import annotations

import random

from e2wm.data.render import ROOMS, goal_phrase, items, noun, plan_text
from e2wm.data.suites.options import mc_row, shots
from e2wm.data.suites.plans import plans
from e2wm.errors import E2WMError
from e2wm.world.activities import ACTIVITIES

SUITES = {"act_recog": "mc", "act_infer": "mc", "housework_qa": "mc", "neg_housework_qa": "mc"}
SHOTS = {"act_recog": 2, "act_infer": 10, "housework_qa": 10, "neg_housework_qa": 10}
OPTIONS = 4
_ROOM_NOUNS = {noun(r) for r in ROOMS}
_LIBRARY = {a.name: {noun(c) for t in a.classes() for c in t.split("|")} for a in ACTIVITIES}


def state(ep) -> str:
    """The goal facts as "The television is on. You sit on the couch.": a character's ON edge and
    SITTING state are told as one SITTING edge."""
    goals = list(ep.goals)
    sits = [g for g in goals if g.endswith(" || SITTING")]
    ons = [g for g in goals if sits and g.startswith(sits[0].split(" || ")[0] + " || ON || ")]
    if ons:
        goals = [g for g in goals if g not in (sits[0], ons[0])] + [ons[0].replace(" ON ", " SITTING ")]
    phrases = dict.fromkeys(p for p in (goal_phrase(g, ep.names) for g in goals) if p)
    return " ".join(p[0].upper() + p[1:] + "." for p in phrases)


def _objects(ep) -> list[str]:
    """The non-room nouns its goal facts name."""
    return [n for n in items(ep.goals, names=ep.names) if n not in _ROOM_NOUNS]


class _Items:
    """Which items each activity uses, and which nouns the episodes name that it never touches."""

    def __init__(self, episodes):
        self.used, touched, vocabulary = {}, {}, set()
        for ep in episodes:
            named = set(items(ep.goals + ep.conditions, ep.lines, ep.names)) - _ROOM_NOUNS
            vocabulary |= named
            touched.setdefault(ep.activity, set(_LIBRARY.get(ep.activity, ()))).update(named)
            self.used.setdefault(ep.activity, set()).update(_objects(ep))
        self.unused = {a: vocabulary - t for a, t in touched.items()}


def _queries(name: str, ep, known: _Items, rng: random.Random) -> tuple[str, str, set]:
    """(query, answer, distractors) of one episode for suite `name`."""
    a = ep.activity
    if name == "act_recog":
        query = f"Given a household activity plan as follows:\n{plan_text(ep.lines, ep.names)}\n" \
                f"Q: What is the name of the activity?\nA:"
        return query, a, set(_LIBRARY) | set(known.used)
    if name == "act_infer":
        return f"{state(ep)}\nQ: What is a plausible activity?\nA:", a, set(_LIBRARY) | set(known.used)
    used, unused = sorted(known.used[a]), sorted(known.unused[a])
    if name == "housework_qa":
        return f"To {a}, a possibly related item could be", rng.choice(_objects(ep)), set(unused)
    return f"To {a}, an unrelated item could be", rng.choice(unused), set(used)


def build(name: str, eval_episodes, train_episodes, rng: random.Random) -> list[dict]:
    train, evals = plans(train_episodes), plans(eval_episodes)
    known = _Items(train + evals)

    def usable(e):   # an episode this suite can ask about
        return _objects(e) and (name != "neg_housework_qa" or known.unused[e.activity])

    sources = [e for e in train if usable(e)]
    rows = []
    for ep in filter(usable, evals):
        try:
            exemplars = [" ".join(_queries(name, e, known, rng)[:2])
                         for e in shots(sources, SHOTS[name], rng)]
            rows.append(mc_row(exemplars, *_queries(name, ep, known, rng), rng, OPTIONS))
        except E2WMError:
            continue
    return rows
