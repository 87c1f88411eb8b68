"""bAbI-style suites over exploration stories, generation format: where an agent is (single fact),
where a carried object is (two facts), where an object was before a room (three facts), how many
and which objects an agent carries (counting, lists), and yes/no room questions (negation, answers
balanced). A story is cut after a random sentence, and the question asks about that point."""
from __future__ import annotations

import random

from e2wm.data.suites.exploration import before, build_from

SUITES = {f"babi_style_{t}": "gen" for t in
          ("single_fact", "two_facts", "three_facts", "counting", "lists", "negation")}
SHOTS = dict.fromkeys(SUITES, 2)
COUNTS = ("none", "one", "two")


def _ask(name: str, story, ep, rng: random.Random) -> list[tuple[str, str, list]]:
    task = name.removeprefix("babi_style_")
    if task == "three_facts":
        return [(f"{story.text()}\nQuestion: Where was the {o} before the {r}?\nAnswer:", prev, [])
                for o, p in sorted(story.paths.items()) if o not in story.ambiguous
                for r, prev in before(p)]
    k = rng.randrange(len(story.sentences))
    text, state = " ".join(story.sentences[:k + 1]), story.timeline[k]
    qa = []
    for name_, room in sorted(state["agent_room"].items()):
        held = state["holding"].get(name_, [])
        if task == "single_fact":
            qa.append((f"Where is {name_}?", room))
        elif task == "two_facts":
            qa += [(f"Where is the {o}?", room) for o in held if o not in story.ambiguous]
        elif task == "counting" and len(held) < len(COUNTS):
            qa.append((f"How many objects is {name_} carrying?", COUNTS[len(held)]))
        elif task == "lists" and not set(held) & story.ambiguous:
            qa.append((f"What is {name_} carrying?", ",".join(held) or "nothing"))
        elif task == "negation":
            others = sorted(set(state["agent_room"].values()) | set(state["object_room"].values()))
            others.remove(room)
            yes = not others or rng.random() < 0.5
            qa.append((f"Is {name_} in the {room if yes else rng.choice(others)}?", "yes" if yes else "no"))
    return [(f"{text}\nQuestion: {q}\nAnswer:", a, []) for q, a in qa]


def build(name: str, eval_episodes, train_episodes, rng: random.Random) -> list[dict]:
    return build_from(_ask, SUITES, SHOTS, {}, name, eval_episodes, train_episodes, rng)
