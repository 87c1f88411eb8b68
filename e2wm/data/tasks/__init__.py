"""Training tasks: each module turns episodes into k-shot rows `{"task", "input", "ref", "weight"}`.

A task module has `TASK`, `WEIGHT`, `SHOTS` and `build(episodes, rng, shots, weight)`; the training
text of a row is `input + ref` (a ref starts with a space). The exemplars of a query are other
episodes' questions with their answers, each block separated by a blank line.
"""
from __future__ import annotations

import random

BLOCK = "\n\n"


def assemble(task: str, examples: list[tuple[str, str] | None], rng: random.Random, shots: int,
             weight: float, head: str | None = None) -> list[dict]:
    """One row per episode with an example (prompt, ref); None marks an episode with no question.
    Each row's exemplars are up to `shots` other episodes' examples, drawn with `rng`."""
    have = [i for i, x in enumerate(examples) if x is not None]
    rows = []
    for i in have:
        others = [j for j in have if j != i]
        blocks = [head] if head else []
        blocks += ["".join(examples[j]) for j in rng.sample(others, min(shots, len(others)))]
        prompt, ref = examples[i]
        rows.append({"task": task, "input": BLOCK.join(blocks + [prompt]), "ref": ref,
                     "weight": weight})
    return rows
