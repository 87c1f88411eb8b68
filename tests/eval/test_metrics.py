"""Generation metrics: ROUGE as rouge-score computes it, E2WM's contiguous LCS, first line, exact match."""
import pytest
from rouge_score import rouge_scorer

from e2wm.eval.metrics import exact_match, first_line, lcs_ratio, rouge

PAIRS = [("Walk to the kitchen. Opened fridge.", "Walk to kitchen. Open fridge."),
         ("Walk to bedroom. Lie on bed.", "Walk to bedroom. Walk to bed. Lie on bed."),
         ("Switch on tv.", "Walk to kitchen.")]


def test_rouge_is_rouge_scores_mean_f_measure():
    ref = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    got = rouge([p for p, _ in PAIRS], [r for _, r in PAIRS])
    for name in ("rouge1", "rouge2", "rougeL"):
        want = sum(ref.score(r, p)[name].fmeasure for p, r in PAIRS) / len(PAIRS)
        assert got[name] == pytest.approx(want, abs=1e-12)
    # by hand: "walk to the kitchen open fridg" vs "walk to kitchen open fridg" (stemmed): P 5/6, R 1
    assert rouge([PAIRS[0][0]], [PAIRS[0][1]])["rouge1"] == pytest.approx(2 * (5 / 6) / (5 / 6 + 1))
    assert rouge(["a b c"], ["a b c"]) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}


@pytest.mark.parametrize("pred, ref, want", [
    ("", "kitchen, bedroom", 0.0),                                   # empty
    ("kitchen, bedroom, bathroom", "kitchen, bedroom, bathroom", 1.0),  # identical
    ("bedroom, bathroom, hallway", "kitchen, bedroom, bathroom", 2 / 3),  # shifted by one
    ("hallway, office", "kitchen, bedroom", 0.0),                    # disjoint
    ("kitchen, bedroom", "bedroom, kitchen, bedroom", 2 / 3),        # longer reference
    ("kitchen, hallway, bedroom", "kitchen, bedroom", 1 / 3),        # a common room, not contiguous
])
def test_lcs_ratio(pred, ref, want):
    assert lcs_ratio(pred, ref) == pytest.approx(want)


def test_first_line_and_exact_match():
    assert first_line(" bedroom, kitchen\nQuestion: more") == "bedroom, kitchen"
    assert exact_match(" yes ", "yes") == 1.0 and exact_match("no", "yes") == 0.0
