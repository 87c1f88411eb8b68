"""Helpers the suites share: multiple-choice options with a balanced answer position, few-shot
prompts, and the two row shapes of E2WM's released format."""
from __future__ import annotations

import random

from e2wm.errors import E2WMError


def choices(answer: str, distractors, rng: random.Random, k: int) -> tuple[list[str], str]:
    """`k` distinct options: `k - 1` distractors drawn from `distractors` (the answer and repeats
    left out) and the answer at a position drawn uniformly. E2WMError when too few distractors."""
    pool = sorted(set(distractors) - {answer})
    if len(pool) < k - 1:
        raise E2WMError(f"options for {answer!r}: need {k - 1} distractors, have {len(pool)}")
    options = rng.sample(pool, k - 1)
    options.insert(rng.randrange(k), answer)
    return options, answer


def prompt(exemplars, query: str) -> str:
    """Few-shot exemplars (each a query followed by its answer), then the query."""
    return "\n\n".join([*exemplars, query])


def shots(pool, n: int, rng: random.Random) -> list:
    """Up to `n` exemplar sources drawn from `pool` without replacement."""
    pool = list(pool)
    return rng.sample(pool, min(n, len(pool)))


def gen_row(exemplars, query: str, ref: str) -> dict:
    return {"input": prompt(exemplars, query), "ref": ref, "probe": f"{query} {ref}"}


def mc_row(exemplars, query: str, answer: str, distractors, rng: random.Random, k: int) -> dict:
    """A multiple-choice row; raises E2WMError (the suite skips the item) when `k` options cannot
    be made."""
    answer_list, answer = choices(answer, distractors, rng, k)
    return {"input": prompt(exemplars, query), "answer_list": answer_list, "answer": answer,
            "probe": f"{query} {answer}"}
