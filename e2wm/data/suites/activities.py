"""Activity suites (E2WM sets 5-8), four options each: activity recognition (plan -> activity name),
activity inference (goal state -> activity), housework QA (an item an activity uses, among items
it does not) and negation housework QA (an item it does not use, among items it uses; E2WM lists
the options in the prompt). Distractors are the hardest available: other activities over the same
objects, and options sharing as many words with the question as the answer does."""
from __future__ import annotations

import random

from e2wm.data.eval_format import SuiteSpec
from e2wm.data.prompts import Templates
from e2wm.data.render import goal_phrase, items, noun
from e2wm.data.suites.options import content, distractors, mc_row, shots, shuffled
from e2wm.data.views import ROOM_NOUNS, pair, plan_of, plans
from e2wm.errors import E2WMError
from e2wm.world.activities import ALL_ACTIVITIES

_UN = SuiteSpec("mc", "accuracy", "un")   # E2WM's calibrated normalisation for these three
SUITES = {"act_recog": SuiteSpec("mc", "accuracy", "ln"), "act_infer": _UN, "housework_qa": _UN,
          "neg_housework_qa": _UN}
SHOTS = {"act_recog": 2, "act_infer": 10, "housework_qa": 10, "neg_housework_qa": 10}
OPTIONS = 4
_LIBRARY = {a.name: {noun(c) for t in a.classes() for c in t.split("|")} for a in ALL_ACTIVITIES}


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
    return [n for n in items(ep.goals, names=ep.names) if n not in ROOM_NOUNS]


class _Known:
    """Per activity: the items its goals use, the nouns it touches (its library classes and what
    its episodes name), the nouns it never touches, and the activities related to it (sharing an
    object)."""

    def __init__(self, episodes):
        self.used, touched, vocabulary = {}, {}, set()
        for ep in episodes:
            named = set(items(ep.goals + ep.conditions, ep.lines, ep.names)) - ROOM_NOUNS
            vocabulary |= named
            touched.setdefault(ep.activity, set(_LIBRARY.get(ep.activity, ()))).update(named)
            self.used.setdefault(ep.activity, set()).update(_objects(ep))
        self.unused = {a: vocabulary - t for a, t in touched.items()}
        self.touched = touched
        self.names = sorted(set(_LIBRARY) | set(self.used))
        objects = {a: _LIBRARY.get(a, set()) | self.used.get(a, set()) for a in self.names}
        self.related = {a: {b for b in self.names if b != a and objects[a] & objects[b]}
                        for a in self.names}


def _item(name: str, ep, known: _Known, t: Templates, rng: random.Random):
    """(query, answer, options, question) of one episode for suite `name`."""
    a = ep.activity
    if name in ("act_recog", "act_infer"):
        question = plan_of(ep) if name == "act_recog" else state(ep)
        query = (t.recognition_suite_query(question) if name == "act_recog"
                 else t.inference_query(question))
        others = distractors(a, question, known.names, known.related[a], rng, OPTIONS - 1)
        return query, a, shuffled(a, others, rng), question
    unused = sorted(known.unused[a])
    if name == "housework_qa":
        # An item not named in the activity's own words, where the goal has one: "to make coffee,
        # a cup" asks more than "to make coffee, a coffee maker", which word matching answers.
        objects = _objects(ep)
        answer = rng.choice([o for o in objects if not content(o) & content(a)] or objects)
        others = distractors(answer, a, unused, (), rng, OPTIONS - 1)
        return t.housework_query(a), answer, shuffled(answer, others, rng), a
    answer = rng.choice(unused)
    others = distractors(answer, a, sorted(known.touched[a]), (), rng, OPTIONS - 1)
    options = shuffled(answer, others, rng)
    return t.neg_housework_query(a, options), answer, options, a


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
    train, evals = plans(train_episodes), plans(eval_episodes)
    known = _Known(train + evals)

    def usable(e):   # an episode this suite can ask about
        return _objects(e) and (name != "neg_housework_qa" or (
            known.unused[e.activity] and len(known.touched[e.activity]) >= OPTIONS - 1))

    sources = [e for e in train if usable(e)]
    rows = []
    for ep in filter(usable, evals):
        try:
            query, answer, options, question = _item(name, ep, known, t, rng)
        except E2WMError:   # too few distractors for this one
            continue
        exemplars = []
        for e in shots(sources, SHOTS[name], rng):
            try:
                exemplars.append(t.solved(name, *_item(name, e, known, t, rng)[:2]))
            except E2WMError:
                continue
        meta = {"pair": list(pair(ep))} if name in ("act_recog", "act_infer") else {}
        rows.append(mc_row(t, name, exemplars, query, answer, options, question, episode=ep.key, **meta))
    return rows
