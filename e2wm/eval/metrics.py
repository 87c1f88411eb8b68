"""Generation metrics, E2WM's: the first line of the output, ROUGE-1/2/L F-measures (the
`rouge-score` package, stemmer on, as E2WM's HF `evaluate` call), the contiguous-LCS ratio of room
lists, and exact match."""
from __future__ import annotations

import statistics
from functools import lru_cache

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def first_line(text: str) -> str:
    """What E2WM kept of a generation: the first line, stripped (training targets end in "\\n")."""
    return text.split("\n")[0].strip()


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_items(predictions, references) -> dict[str, list[float]]:
    """Each pair's ROUGE-1/2/L F-measure (0..1), by type: the per-item values `rouge` averages."""
    pairs = list(zip(predictions, references, strict=True))
    out: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for pred, ref in pairs:
        scores = _scorer().score(ref, pred)
        for name in ROUGE_TYPES:
            out[name].append(scores[name].fmeasure)
    return out


def rouge(predictions, references) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs (0..1)."""
    return {name: statistics.mean(v) if v else 0.0 for name, v in rouge_items(predictions, references).items()}


def lcs_ratio(prediction: str, reference: str) -> float:
    """E2WM's path score: the longest run of rooms the two lists share contiguously, divided by the
    longer list's length ("kitchen, bedroom" against "bedroom, kitchen, bedroom" -> 2/3)."""
    pred = [x.strip() for x in prediction.split(",") if x.strip()]
    ref = [x.strip() for x in reference.split(",") if x.strip()]
    if not pred or not ref:
        return 0.0
    best, run = 0, [0] * (len(ref) + 1)
    for p in pred:
        prev = 0
        for j, r in enumerate(ref, 1):
            prev, run[j] = run[j], (prev + 1 if p == r else 0)
            best = max(best, run[j])
    return best / max(len(pred), len(ref))


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())
