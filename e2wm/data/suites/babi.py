"""bAbI-style suites over multi-agent stories, generation format: where an agent is (single fact),
where a carried object is (two facts), where an object was before a room (three facts), how many
and which objects an agent carries (counting, lists), and yes/no room questions (negation, answers
balanced). A story is cut after a random sentence, and the question asks about that point."""
from __future__ import annotations

import random

from e2wm.data.eval_format import SuiteSpec
from e2wm.data.prompts import Templates
from e2wm.data.stories import tell
from e2wm.data.suites.exploration import before
from e2wm.data.suites.options import gen_row, shots
from e2wm.data.views import explorations

SUITES = {f"babi_style_{t}": SuiteSpec("gen", "exact_match") for t in
          ("single_fact", "two_facts", "three_facts", "counting", "lists", "negation")}
SHOTS = dict.fromkeys(SUITES, 2)
COUNTS = ("none", "one", "two")


def _ask(name: str, story, rng: random.Random, t: Templates) -> list[tuple[str, str]]:
    task = name.removeprefix("babi_style_")
    if task == "three_facts":
        return [(t.story_query(story.text(cut), f"Where was the {o} before the {r}?"), prev)
                for o, (cut, p) in story.short_paths().items() for r, prev in before(p)]
    k = rng.randrange(len(story.sentences))
    text, state = story.text(k + 1), story.timeline[k]
    qa = []
    for who, room in sorted(state["agent_room"].items()):
        held = state["holding"].get(who, [])
        if task == "single_fact":
            qa.append((f"Where is {who}?", room))
        elif task == "two_facts":
            qa += [(f"Where is the {o}?", room) for o in held if o not in story.ambiguous]
        elif task == "counting" and len(held) < len(COUNTS):
            qa.append((f"How many objects is {who} carrying?", COUNTS[len(held)]))
        elif task == "lists" and not set(held) & story.ambiguous:
            qa.append((f"What is {who} carrying?", ",".join(held) or "nothing"))
        elif task == "negation":
            others = sorted(set(state["rooms"]) - {room})
            yes = not others or rng.random() < 0.5
            qa.append((f"Is {who} in the {room if yes else rng.choice(others)}?", "yes" if yes else "no"))
    return [(t.story_query(text, q), a) for q, a in qa]


def build(name: str, eval_episodes, train_episodes, rng: random.Random, t: Templates) -> list[dict]:
    train = explorations(train_episodes)
    rows = []
    for ep in explorations(eval_episodes):
        asked = _ask(name, tell(ep, rng), rng, t)
        if not asked:
            continue
        exemplars = []
        for e in shots(train, SHOTS[name], rng):
            if qs := _ask(name, tell(e, rng), rng, t):
                exemplars.append(t.solved(name, *rng.choice(qs)))
        rows += [gen_row(t, name, exemplars, q, a, episode=ep.key) for q, a in asked]
    return rows
