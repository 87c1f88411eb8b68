import json
import random
from collections import Counter

import pytest

from e2wm.collect.explore import ExploreConfig, explore_episode
from e2wm.collect.mcts import MCTSConfig
from e2wm.collect.plans import plan_episode
from e2wm.data import suites
from e2wm.data.eval_format import read_eval
from e2wm.data.suites.options import choices
from e2wm.errors import E2WMError
from e2wm.world.activities import get_activity
from e2wm.world.graph import Scene
from e2wm.world.procedural import generate_apartment

TRAIN_ACTS = ("watch tv", "make coffee", "turn on light", "read book")
EVAL_ACTS = ("watch tv", "make coffee", "brush teeth", "go to sleep", "wash hands")


def _plan(activity, seed):
    act = get_activity(activity)
    scene = next(s for s in range(seed, seed + 30) if act.fits(Scene.from_dict(generate_apartment(s))))
    return plan_episode(f"procedural:{scene}", activity, MCTSConfig(simulations=300), seed)


TRAIN = [_plan(a, 0) for a in TRAIN_ACTS] + [explore_episode(f"procedural:{s}", ExploreConfig(2, 30), s)
                                           for s in (0, 1)]
EVAL = [_plan(a, 1) for a in EVAL_ACTS] + [explore_episode(f"procedural:{s}", ExploreConfig(2, 30), s)
                                         for s in (2, 3, 4)]


@pytest.mark.parametrize("name", sorted(suites.SUITES))
def test_each_suite_builds_rows_in_the_released_format(name):
    rows = suites.build(name, EVAL, TRAIN, random.Random(0))
    assert rows, name
    for row in rows:
        assert row["probe"] and row["probe"] in row["input"] + " " + row.get("ref", row.get("answer"))
        if suites.SUITES[name] == "gen":
            assert set(row) == {"input", "ref", "probe"} and row["ref"]
        else:
            assert set(row) == {"input", "answer_list", "answer", "probe"}
            assert row["answer_list"].count(row["answer"]) == 1
            assert len(set(row["answer_list"])) == len(row["answer_list"])


def test_unseen_suites_hold_only_activities_absent_from_training():
    seen = {e.activity for e in TRAIN if e.kind == "plan"}
    for name in ("plan_gen_unseen", "plan_gen_unseen_confusing"):
        asked = {r["probe"].split("?")[0].removeprefix("Q: How to ") for r in
                 suites.build(name, EVAL, TRAIN, random.Random(0))}
        assert asked and not asked & seen
    seen_asked = {r["probe"].split("?")[0].removeprefix("Q: How to ") for r in
                  suites.build("plan_gen", EVAL, TRAIN, random.Random(0))}
    assert seen_asked and seen_asked <= seen


def test_confusing_plans_add_items_to_the_same_query():
    plain = suites.build("plan_gen", EVAL, TRAIN, random.Random(0))
    confusing = suites.build("plan_gen_confusing", EVAL, TRAIN, random.Random(0))
    assert [r["ref"] for r in plain] == [r["ref"] for r in confusing]
    assert all(len(c["probe"]) > len(p["probe"]) for p, c in zip(plain, confusing))


def _balanced(positions, k):
    counts = Counter(positions)
    assert len(positions) >= 200 and len(counts) == k
    assert max(counts.values()) / min(counts.values()) < 1.6, counts


def test_choices_balance_positions_and_hold_the_answer_once():
    rng = random.Random(1)
    positions = []
    for i in range(400):
        options, answer = choices(f"a{i}", [f"a{i}", "x", "y", "y", "z", "w"], rng, 4)
        assert options.count(answer) == 1 and len(set(options)) == 4
        positions.append(options.index(answer))
    _balanced(positions, 4)
    with pytest.raises(E2WMError):
        choices("a", ["a", "b", "b"], rng, 4)


def test_suite_answer_positions_are_balanced():
    rows = suites.build("act_recog", EVAL * 60, TRAIN, random.Random(2))
    _balanced([r["answer_list"].index(r["answer"]) for r in rows], 4)


def test_negation_answers_are_balanced():
    rows = suites.build("babi_style_negation", EVAL[-3:] * 25, TRAIN, random.Random(3))
    counts = Counter(r["ref"] for r in rows)
    assert len(rows) >= 100 and max(counts.values()) / min(counts.values()) < 1.6, counts


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
