"""Plan generation suites (E2WM sets 1-4): an activity, its items and conditions -> the plan. Seen suites hold activities the training episodes plan, unseen ones the rest;
confusing ones add distractor items and conditions taken from other episodes. Seen and confusing
rows come from the same episodes, so the leak guard keeps or drops them together."""
from __future__ import annotations

import random

from e2wm.data.eval_format import SuiteSpec
from e2wm.data.prompts import Templates
from e2wm.data.render import condition, items
from e2wm.data.suites.options import gen_row, shots
from e2wm.data.views import pair, plan_of, plan_parts, plans
from e2wm.world.facts import Fact

SUITES = dict.fromkeys(("plan_gen", "plan_gen_unseen", "plan_gen_confusing", "plan_gen_unseen_confusing"),
                       SuiteSpec("gen", "rouge", world=True))
SHOTS = 2
DISTRACTORS = 2   # distractor objects per confusing query, each with its conditions


def _confuse(ep, others, rng: random.Random) -> tuple[list[str], list[str]]:
    """The episode's items and conditions with those of up to DISTRACTORS objects it does not name
    (from `others`) inserted at random positions."""
    item_list, sentences = plan_parts(ep)
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


def world_ref(ep) -> dict:
    """Where the plan starts, what it must make true and the nodes it names, in order of
    preference when a noun names several: the extra field
    `e2wm.eval.executability` runs a generated plan with (E2WM's readers ignore it)."""
    goal_nodes = [n for g in ep.goals for n in Fact.parse(g).nodes()]
    named = sorted(int(i) for i in ep.names)
    return {"scene": ep.scene, "goals": list(ep.goals),
            "nodes": list(dict.fromkeys(goal_nodes + named))}   # goal nodes first: they win a noun


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
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
            parts = plan_parts(ep)
        exemplars = [t.solved("plan_generation", t.plan_query(e.activity, *plan_parts(e)), plan_of(e))
                     for e in shots(train, SHOTS, rng)]
        rows.append(gen_row(t, "plan_generation", exemplars, t.plan_query(ep.activity, *parts),
                            plan_of(ep), pair=list(pair(ep)), episode=ep.key, world=world_ref(ep)))
    return rows
