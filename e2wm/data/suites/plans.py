"""Plan generation suites (E2WM sets 1-4): "Q: How to <activity>? Given items include ... <conditions>
A:" -> the plan. Seen suites hold activities the training episodes plan, unseen ones the rest;
confusing ones add distractor items and conditions taken from other episodes."""
from __future__ import annotations

import random

from e2wm.data.render import condition, items, plan_text
from e2wm.data.suites.options import gen_row, shots
from e2wm.world.facts import Fact

SUITES = {"plan_gen": "gen", "plan_gen_unseen": "gen", "plan_gen_confusing": "gen",
          "plan_gen_unseen_confusing": "gen"}
SHOTS = 2
DISTRACTORS = 2   # distractor objects per confusing query, each with its conditions


def plans(episodes) -> list:
    return [e for e in episodes if e.kind == "plan" and e.success and e.activity and e.steps]


def query(activity: str, item_list, sentences) -> str:
    return f"Q: How to {activity}? Given items include {', '.join(item_list)}. {' '.join(sentences)}\nA:"


def _parts(ep) -> tuple[list[str], list[str]]:
    return items(ep.conditions, ep.lines, ep.names), \
        [c for c in (condition(t, ep.names) for t in ep.conditions) if c]


def _confuse(ep, others, rng: random.Random) -> tuple[list[str], list[str]]:
    """The episode's items and conditions with those of up to DISTRACTORS objects it does not name
    (from `others`) inserted at random positions."""
    item_list, sentences = _parts(ep)
    extra = {}   # distractor noun -> (the first node of that noun, its condition sentences)
    for o in others:
        for t in o.conditions:
            text = condition(t, o.names)
            subject = text and items([t], names=o.names)[0]
            if text and subject not in item_list:
                node, texts = extra.setdefault(subject, ((o.key, Fact.parse(t).a), []))
                if node == (o.key, Fact.parse(t).a):
                    texts.append(text)
    for noun in rng.sample(sorted(extra), min(DISTRACTORS, len(extra))):
        item_list.insert(rng.randint(0, len(item_list)), noun)
        for text in extra[noun][1]:
            sentences.insert(rng.randint(0, len(sentences)), text)
    return item_list, sentences


def build(name: str, eval_episodes, train_episodes, rng: random.Random) -> list[dict]:
    eval_episodes, train_episodes = list(eval_episodes), list(train_episodes)
    train, evals = plans(train_episodes), plans(eval_episodes)
    seen = {e.activity for e in train}
    unseen = "unseen" in name
    rows = []
    for ep in evals:
        if (ep.activity in seen) == unseen:
            continue
        if "confusing" in name:
            same_scene = [o for o in eval_episodes + train_episodes
                          if o.scene == ep.scene and o.activity != ep.activity]
            parts = _confuse(ep, same_scene or train, rng)
        else:
            parts = _parts(ep)
        exemplars = [f"{query(e.activity, *_parts(e))} {plan_text(e.lines, e.names)}"
                     for e in shots(train, SHOTS, rng)]
        rows.append(gen_row(exemplars, query(ep.activity, *parts), plan_text(ep.lines, ep.names)))
    return rows
