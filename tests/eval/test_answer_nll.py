"""Answer NLL and per-item values in results.json: each item's reference answer (multiple choice: the correct
option) scored by `e2wm eval --model tiny` equals its mean per-token negative log-likelihood computed here by
hand from one forward of the whole string; the suite figures are the means of the per-item values, each with
its bootstrap interval."""
import json
import statistics

import pytest
import torch

from e2wm.cli import main
from e2wm.eval.intervals import bootstrap, settings
from e2wm.train.model import load_tokenizer, tiny_causal_lm

GEN = [{"input": "Q: How to turn off tv? Given items include television.\nA:",
        "ref": "Walk to television. Switch off television."},
       {"input": "Anna took the hat. Anna went to the bathroom.\nQuestion: Where was the hat?\nAnswer:",
        "ref": "bedroom, bathroom"},
       {"input": "Q: How to wash a cup?\nA:", "ref": "Walk to kitchen. Grab cup. Put cup in sink."}]
MC = [{"input": "Q: Sue put the rug on the desk. How many items are on the desk?\nA:", "answer": "1",
       "answer_list": ["0", "1", "2", "3", "4"]},
      {"input": "Question: To wash clothes, a related item could be\nAnswer:", "answer": "laundry detergent",
       "answer_list": ["highlighter", "crackers", "laundry detergent", "cupcake"]},
      {"input": "Question: Where is the fridge?\nAnswer:", "answer": "kitchen", "answer_list": ["kitchen", "desk"]},
      {"input": "Q: Tom went to the office. Where is Tom?\nA:", "answer": "office",
       "answer_list": ["bathroom", "office", "hallway"]}]


def _by_hand(model, tok, prompt: str, answer: str) -> float:
    """The mean over the answer's tokens (those of f"{prompt} {answer}" ending after the prompt, trailing special
    tokens dropped) of minus their log-probability, from one forward of the whole string."""
    enc = tok(f"{prompt} {answer}", return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    while ids[-1] in tok.all_special_ids:
        ids = ids[:-1]
    start = next(i for i, (a, b) in enumerate(offsets) if b > len(prompt) and b > a)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return -sum(float(logp[j - 1, ids[j]]) for j in range(start, len(ids))) / (len(ids) - start)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("answer_nll")
    suites = d / "suites"
    suites.mkdir()
    for name, rows in (("plan_gen", GEN), ("obj_move_path", GEN), ("count", MC), ("housework_qa", MC)):
        (suites / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--model", "tiny", "--suites", str(suites), "--out", str(d / "out"), "--num-beams", "1",
                 "--max-new-tokens", "6", "--mc-batch", "2"]) == 0
    return json.loads((d / "out" / "results.json").read_text()), (d / "out" / "results.md").read_text()


def test_answer_nll_is_the_answers_mean_token_nll_computed_by_hand(results):
    model, tok = tiny_causal_lm(), load_tokenizer("tiny")   # what --model tiny loads
    suites = results[0]["suites"]
    for name, rows, answer in (("plan_gen", GEN, "ref"), ("count", MC, "answer"), ("housework_qa", MC, "answer")):
        want = [_by_hand(model, tok, r["input"], r[answer]) for r in rows]
        got = suites[name]["per_item"]["answer_nll"]
        assert len(got) == len(rows) and all(abs(g - w) <= 1e-5 for g, w in zip(got, want)), (name, got, want)
        assert suites[name]["answer_nll"]["mean"] == pytest.approx(statistics.mean(want), abs=1e-5)
    assert len(set(suites["count"]["per_item"]["answer_nll"])) == len(MC)   # the items' own answers


def test_every_figure_carries_n_its_interval_and_its_per_item_values(results):
    suites, md = results
    suites = suites["suites"]
    for name, s in suites.items():
        per = s["per_item"]
        head = s["rougeL"] if s["metric"] == "rouge" else s["lcs"] if s["metric"] == "lcs" else s["accuracy"]
        assert s["n"] == len(per["score"]) == len(per["answer_nll"]) == (len(GEN) if s["format"] == "gen" else len(MC))
        assert statistics.mean(per["score"]) == pytest.approx(head, abs=1e-12), name
        assert all(0 <= x <= 1 for x in per["score"])
        low, high = bootstrap(per["score"])
        assert s["interval"] == {"low": low, "high": high, **settings()} and low <= head <= high
        low, high = bootstrap(per["answer_nll"])
        assert s["answer_nll"] == {"mean": statistics.mean(per["answer_nll"]), "low": low, "high": high}
        assert f"| {name} | {s['n']} |" in md and f"[{s['interval']['low']:.4f}, {s['interval']['high']:.4f}]" in md
    # multiple choice: each item's 0/1 under the suite's own normalisation (count: ln, housework_qa: un)
    for name in ("count", "housework_qa"):
        s = suites[name]
        assert statistics.mean(s["per_item"]["score"]) == s["accuracy_by_norm"][s["normalisation"]]
    assert suites["count"]["normalisation"] == "ln" and suites["housework_qa"]["normalisation"] == "un"
    assert suites["plan_gen"]["empty_predictions"] in range(len(GEN) + 1)
    assert "empty_predictions" not in suites["count"]


@pytest.mark.parametrize("metric", ["rouge", "lcs", "exact_match"])
def test_a_generation_suite_s_per_item_scores_are_its_headline_metric_item_by_item(metric):
    """`_gen`'s per-item scores (the tiny model's predictions score 0 everywhere, so they are given here): ROUGE-L F
    as rouge-score computes it, the LCS ratio or exact match, averaging to the headline; empty predictions counted."""
    from rouge_score import rouge_scorer

    from e2wm.data.eval_format import SuiteSpec
    from e2wm.eval.harness import _gen, headline
    rows = [{"input": "Q:", "ref": r} for r in ("kitchen, bedroom, bathroom", "Walk to kitchen. Open fridge.",
                                                "bedroom", "hallway, office")]
    preds = ["bedroom, bathroom, hallway", "Walk to the kitchen. Opened fridge.", "bedroom", " "]
    out = _gen(SuiteSpec("gen", metric), rows, preds)
    want = {"rouge": [rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(r["ref"], p)["rougeL"].fmeasure
                      for p, r in zip(preds, rows)],
            "lcs": [2 / 3, 0.0, 1.0, 0.0],   # shared contiguous rooms / the longer list
            "exact_match": [0.0, 0.0, 1.0, 0.0]}[metric]
    assert out["per_item"]["score"] == pytest.approx(want, abs=1e-12)
    assert statistics.mean(out["per_item"]["score"]) == pytest.approx(headline(out)[1], abs=1e-12)
    assert out["empty_predictions"] == 1
