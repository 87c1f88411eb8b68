"""Evaluation suites from a real small collection, and reading E2WM's released format."""
import dataclasses
import json
from collections import Counter

import pytest

from e2wm.data import suites
from e2wm.data.eval_format import KNOWN, read_eval, read_spec
from e2wm.data.prompts import COUNT_OPTIONS
from e2wm.data.suites.exploration import ROOM_ORDER
from e2wm.data.suites.options import distractors
from e2wm.errors import E2WMError
from e2wm.world.activities import UNSEEN_NAMES


@pytest.mark.parametrize("name", sorted(suites.SUITES))
def test_each_suite_is_in_the_released_format_with_unique_queries(built_dataset, name):
    kind, rows = read_eval(built_dataset / "eval" / f"{name}.jsonl")
    assert kind == suites.SUITES[name] and rows
    queries = Counter(r["input"].rsplit("\n\n", 1)[-1] + (r.get("answer") or "") for r in rows)
    assert max(queries.values()) == 1
    for r in rows:
        assert not (r.get("ref") or r["answer"]).startswith(" ")
        if kind == "mc":
            assert r["answer_list"].count(r["answer"]) == 1 and len(set(r["answer_list"])) == len(r["answer_list"])


def test_each_suite_declares_its_spec_in_a_sidecar_that_reads_back(built_dataset):
    """build-data writes every suite's declared spec next to it (the .jsonl stays E2WM's format), and our
    suites that share a name with one of E2WM's released files declare E2WM's metric and normalisation."""
    for name, spec in suites.SPECS.items():
        path = built_dataset / "eval" / f"{name}.jsonl"
        assert read_spec(path, *read_eval(path)) == (spec, f"sidecar {name}.suite.yaml")
        if name in KNOWN:
            assert dataclasses.replace(spec, world=False) == KNOWN[name], name
    assert {n: s.metric for n, s in suites.SPECS.items() if s.kind == "gen"} == {
        **dict.fromkeys(["plan_gen", "plan_gen_unseen", "plan_gen_confusing", "plan_gen_unseen_confusing"], "rouge"),
        "obj_path": "lcs", **{n: "exact_match" for n in suites.SUITES if n.startswith("babi_style_")}}


def test_count_and_location_options_are_in_a_fixed_order(built_dataset):
    for r in read_eval(built_dataset / "eval" / "count_qa.jsonl")[1]:
        assert r["answer_list"] == list(COUNT_OPTIONS)
    rows = read_eval(built_dataset / "eval" / "obj_location.jsonl")[1]
    assert {"before", "after"} <= {w for r in rows for w in ("before", "after") if f" {w} the " in r["input"][-80:]}
    for r in rows:
        assert r["answer_list"] == [x for x in ROOM_ORDER if x in r["answer_list"]]
        story = r["input"].rsplit("\n\n", 1)[-1]
        assert all(f"the {x}." in story or f"the {x}?" in story for x in r["answer_list"])


def test_unseen_suites_hold_only_held_out_activities(built_dataset):
    summary = json.loads((built_dataset / "summary.json").read_text())
    unseen = set(summary["split"]["unseen_activities"])
    assert UNSEEN_NAMES & unseen
    for name in ("plan_gen_unseen", "plan_gen_unseen_confusing"):
        for r in read_eval(built_dataset / "eval" / f"{name}.jsonl")[1]:
            assert r["input"].rsplit("Q: How to ", 1)[1].split("?")[0] in unseen


def test_distractors_defeat_a_word_overlap_guess_when_they_can():
    picked = distractors("make coffee", "Walk to coffee maker. Put cup on coffee maker.",
                         ["make tea", "coffee table chat", "watch tv", "buy coffee beans", "sleep"],
                         {"make tea"}, __import__("random").Random(0), 3)
    assert {"coffee table chat", "buy coffee beans"} <= set(picked) and "make tea" in picked
    with pytest.raises(E2WMError, match="need 3 distractors"):
        distractors("a", "q", ["b"], (), __import__("random").Random(0), 3)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_eval_reads_the_released_formats(tmp_path):
    gen = [{"input": "Q: How to relax?\nA:", "ref": "Walk to sofa."}, {"input": "Q: x\nA:", "ref": "y"}]
    mc = [{"input": "To wash clothes, a possibly related item could be", "answer_list": ["soap", "bed"],
           "answer": "soap"}, {"input": "q", "answer_list": ["1", "2"], "answer": "2"}]
    assert read_eval(_write(tmp_path / "g.json", "\n".join(map(json.dumps, gen)) + "\n")) == ("gen", gen)
    assert read_eval(_write(tmp_path / "m.json", "\n".join(map(json.dumps, mc)))) == ("mc", mc)
    assert read_eval(_write(tmp_path / "l.json", json.dumps(mc, indent=1))) == ("mc", mc)


@pytest.mark.parametrize("second, problem", [
    ('{"input": "q", "answer_list": ["a", "b"], "answer": "c"}', "answer"),
    ('{"input": "q"', "malformed JSON"),
    ('{"input": "q", "answer_list": ["a"], "answer": "a"}', "mc row in a gen file"),
])
def test_read_eval_rejects_a_malformed_row_naming_file_and_line(tmp_path, second, problem):
    path = _write(tmp_path / "bad.json", '{"input": "q", "ref": "r"}\n' + second + "\n")
    with pytest.raises(E2WMError, match=problem) as e:
        read_eval(path)
    assert f"{path}:2:" in str(e.value)
