"""The leak guard: no evaluation story, plan or question may appear in the training data.

Texts are compared as lower-case word n-grams. An evaluation probe (the query and answer of one
item, without its few-shot exemplars) leaks when it occurs whole in the training rows (inputs and
references, exemplars included: E2WM's counting test sat inside its training prompts as
exemplars), or when at least `threshold` of its content n-grams do. Content excludes template
n-grams, those found in at least `common` of the training rows ("given a household activity plan
as follows"), which every item shares; a probe shorter than n words leaks only when whole.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from e2wm.errors import E2WMError

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class Overlap:
    item: str          # "<suite>#<row>"
    fraction: float
    probe: str


class LeakGuard:
    def __init__(self, train_texts, n: int = 8, threshold: float = 0.5, min_words: int = 5,
                 common: float = 0.05):
        self.n, self.threshold, self.min_words = n, threshold, min_words
        self._texts = [words(t) for t in train_texts]
        df = Counter(g for w in self._texts for g in set(zip(*(w[i:] for i in range(n)))))
        self._grams = set(df)
        floor = max(3, common * len(self._texts))
        self._template = {g for g, k in df.items() if k >= floor}
        self._short: dict[int, set[tuple[str, ...]]] = {}   # every k-gram for k < n, built lazily

    def _grams_of(self, k: int) -> set:
        if k == self.n:
            return self._grams
        if k not in self._short:
            self._short[k] = {g for w in self._texts for g in zip(*(w[i:] for i in range(k)))}
        return self._short[k]

    def overlap(self, probe: str) -> float:
        """1 when the probe occurs whole in training, else the share of its content n-grams there
        (0 for probes under min_words, and for probes with no content n-gram)."""
        w = words(probe)
        if len(w) < self.min_words:
            return 0.0
        k = min(self.n, len(w))
        grams = list(zip(*(w[i:] for i in range(k))))
        index = self._grams_of(k)
        if all(g in index for g in grams):
            return 1.0
        content = [g for g in grams if g not in self._template] if k == self.n else []
        return sum(g in index for g in content) / len(content) if content else 0.0

    def leaks(self, probe: str) -> bool:
        return self.overlap(probe) >= self.threshold

    def check(self, suites: dict[str, list[dict]]) -> None:
        """Raise naming every evaluation item whose probe overlaps the training data."""
        bad = [Overlap(f"{name}#{i}", f, row["probe"]) for name, rows in suites.items()
               for i, row in enumerate(rows) if (f := self.overlap(row["probe"])) >= self.threshold]
        if bad:
            shown = "; ".join(f"{b.item} ({b.fraction:.0%} of its {self.n}-grams in training: "
                              f"{b.probe[:60]!r})" for b in bad[:5])
            raise E2WMError(f"leak guard: {len(bad)} evaluation item(s) overlap the training data: {shown}"
                            + (" ..." if len(bad) > 5 else ""))
