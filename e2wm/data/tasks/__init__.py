"""Training tasks: each module turns episodes into k-shot rows `{"task", "input", "ref", "weight"}`.

A task module has `TASK`, `WEIGHT`, `SHOTS` and `build(episodes, rng, templates, weight)`; a row's
training text is f"{input} {ref}\\n" (E2WM's). Rows also carry the builder's provenance fields, which it
strips before writing (`INTERNAL`): "episode" (the key of the episode the row asks about) and "query" (the
question, without exemplars). The exemplars of a query are other episodes' questions with their
answers, joined as `e2wm.data.prompts` says.
"""
from __future__ import annotations

import random

from e2wm.data.prompts import Templates


INTERNAL = ("episode", "query")   # provenance fields of a row, not part of the written training rows


def assemble(task: str, examples: list[tuple[str, str] | None], rng: random.Random, shots: int,
             weight: float, templates: Templates, head: str | None = None,
             keys: list[str] | None = None) -> list[dict]:
    """One row per episode with an example (query, ref); None marks an episode with no question.
    Each row's exemplars are up to `shots` other episodes' examples, drawn with `rng`. With `keys`
    (the episodes' keys, parallel to `examples`), each row carries its "episode" and "query"."""
    have = [i for i, x in enumerate(examples) if x is not None]
    rows = []
    for i in have:
        others = [j for j in have if j != i]
        blocks = [templates.solved(task, *examples[j]) for j in rng.sample(others, min(shots, len(others)))]
        query, ref = examples[i]
        row = {"task": task, "input": templates.prompt(task, blocks, query, head), "ref": ref, "weight": weight}
        if keys is not None:
            row.update(episode=keys[i], query=query)
        rows.append(row)
    return rows
