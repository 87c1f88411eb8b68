"""What the suites share: hard distractors, option lists, and the two row shapes of E2WM's released
format, plus the fields the builder reads and strips before writing (see `_INTERNAL`)."""
from __future__ import annotations

import random

from e2wm.data.leak import words
from e2wm.data.prompts import Templates
from e2wm.errors import E2WMError

# Words a word-overlap guesser should not count.
STOP = frozenset("a an the to of in on and or is are be it you your with for at by as from up "
                 "could item possibly related unrelated activity what".split())
INTERNAL = ("probe", "query", "question", "pair", "episode")


def content(text: str) -> set[str]:
    return set(words(text)) - STOP


def distractors(answer: str, question: str, pool, related, rng: random.Random, k: int) -> list[str]:
    """`k` distractors from `pool` (the answer left out), hardest first: those sharing at least as
    many content words with the question as the answer does (a word-overlap guess cannot tell
    them apart), then those in `related`, then the rest; each tier drawn with `rng`."""
    q, gold = content(question), len(content(answer) & content(question))
    rest = sorted(set(pool) - {answer})
    tiers = ([o for o in rest if len(content(o) & q) >= gold],
             [o for o in rest if o in related], rest)
    out: list[str] = []
    for tier in tiers:
        fresh = [o for o in tier if o not in out]
        out += rng.sample(fresh, min(k - len(out), len(fresh)))
    if len(out) < k:
        raise E2WMError(f"options for {answer!r}: need {k} distractors, have {len(out)}")
    return out


def shuffled(answer: str, others: list[str], rng: random.Random) -> list[str]:
    """The options with the answer at a position drawn uniformly."""
    options = list(others)
    options.insert(rng.randrange(len(options) + 1), answer)
    return options


def shots(pool, n: int, rng: random.Random) -> list:
    """Up to `n` exemplar sources drawn from `pool` without replacement."""
    pool = list(pool)
    return rng.sample(pool, min(n, len(pool)))


def gen_row(t: Templates, kind: str, exemplars, query: str, ref: str, **meta) -> dict:
    return {"input": t.prompt(kind, exemplars, query), "ref": ref, "probe": f"{query} {ref}",
            "query": query, **meta}


def mc_row(t: Templates, kind: str, exemplars, query: str, answer: str, options: list[str],
           question: str, **meta) -> dict:
    return {"input": t.prompt(kind, exemplars, query), "answer_list": list(options), "answer": answer,
            "probe": f"{query} {answer}", "query": query, "question": question, **meta}
