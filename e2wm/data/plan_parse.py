"""Plans read back: English plan sentences -> VirtualHome script lines (the renderer's inverse).

A plan such as "Walk to kitchen. Open fridge. Put mug in fridge." is split into sentences, each
matched against the imperative form of every action (`render.PLAN_FORMS`, the same table that
writes them), and each noun resolved to a node of the scene whose class renders as that noun.
A noun several nodes share resolves to the earliest of the `prefer` nodes that it names (an
item's goal nodes first, then the others its episode names), else to the lowest id. Each sentence gives a `Step`: its script line, or why it has none,
so a generated plan can be scored step by step rather than rejected whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from e2wm.data.render import PLAN_FORMS, noun
from e2wm.world.legal import line_text


@dataclass(frozen=True)
class Step:
    sentence: str
    line: str | None          # the script line, or None
    problem: str | None = None  # why there is no line: "unparsable" or "unknown <noun>"


@lru_cache(maxsize=None)
def _patterns() -> tuple[tuple[str, re.Pattern, int], ...]:
    """(action, regex, arity) per distinct sentence form; the first action of a form wins (Drop)."""
    out, seen = [], set()
    for action, form in PLAN_FORMS.items():
        if form in seen:
            continue
        seen.add(form)
        arity = form.count("{")
        rx = re.escape(form).replace(r"\{0\}", "(.+)").replace(r"\{1\}", "(.+)")
        out.append((action, re.compile(rx + r"\Z", re.I), arity))
    return tuple(out)


def sentences(text: str) -> list[str]:
    """A plan's sentences, each with its final period."""
    return [s.strip() + "." for s in re.split(r"\.(?:\s+|$)", text.strip()) if s.strip()]


def parse_plan(text: str, scene, prefer=()) -> list[Step]:
    """One Step per sentence of `text`, resolved against `scene` (an e2wm.world Scene)."""
    by_noun: dict[str, list[int]] = {}
    for i, cls in sorted(scene.class_name.items()):
        if scene.category.get(i) != "Characters":
            by_noun.setdefault(noun(cls), []).append(i)
    rank = {}
    for i in prefer:
        rank.setdefault(int(i), len(rank))

    def node(word: str) -> int | None:
        ids = by_noun.get(word.strip().lower())
        if not ids:
            return None
        return min(ids, key=lambda i: (rank.get(i, len(rank)), i))

    steps = []
    for sent in sentences(text):
        step = Step(sent, None, "unparsable")
        for action, rx, arity in _patterns():
            m = rx.match(sent)
            if not m:
                continue
            words = m.groups()
            ids = [node(w) for w in words]
            if all(i is not None for i in ids):
                step = Step(sent, line_text(scene, action, tuple(ids)))
                break
            missing = next(w for w, i in zip(words, ids) if i is None)
            if step.problem == "unparsable":   # a form matched: keep the first unknown noun
                step = Step(sent, None, f"unknown {missing.strip()!r}")
        steps.append(step)
    return steps
