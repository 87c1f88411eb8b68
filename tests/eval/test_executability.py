"""Plan executability on hand-made plans in the tiny scene: the tv (22) is off, in the bedroom."""
import pytest

from e2wm.eval.executability import execute

REF = {"scene": "unused: the scene is given", "goals": ["<tv> (22) || ON"], "nodes": [22]}


@pytest.mark.parametrize("plan, executed, executable, success, stopped", [
    ("Walk to tv. Switch on tv.", 2, True, True, None),                           # correct
    ("Switch on tv. Walk to tv.", 0, False, False, "engine"),                     # wrong order
    ("Walk to tv. Switch on unicorn.", 1, False, False, "unknown 'unicorn'"),     # unknown object
    ("Walk to tv. Please turn it on.", 1, False, False, "unparsable"),            # unparsable
    ("Walk to tv.", 1, True, False, None),                                        # runs, goal not met
])
def test_hand_made_plans(tiny_scene, plan, executed, executable, success, stopped):
    e = execute(plan, REF, tiny_scene)
    assert (e.executed, e.executable, e.success) == (executed, executable, success)
    if stopped == "engine":
        assert e.stopped and "unknown" not in e.stopped and e.stopped != "unparsable"
    else:
        assert e.stopped == stopped
    assert e.fraction == pytest.approx(executed / e.sentences)


def test_a_collected_plan_runs_from_its_source(episodes_dir):
    import json
    from e2wm.data.render import plan_text
    ep = next(json.loads(x) for x in (episodes_dir / "shard-00000.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "plan" and json.loads(x)["success"])
    ref = {"scene": ep["scene"], "goals": ep["goals"], "nodes": [int(i) for i in ep["names"]]}
    e = execute(plan_text([s["line"] for s in ep["steps"]], ep["names"]), ref)
    assert e.executable and e.success and e.fraction == 1.0


def test_every_reference_plan_of_the_plan_suites_executes_and_reaches_its_goal(built_dataset):
    from e2wm.data.eval_format import read_eval
    for name in ("plan_gen", "plan_gen_unseen", "plan_gen_confusing"):
        rows = read_eval(built_dataset / "eval" / f"{name}.jsonl")[1]
        assert rows and all("world" in r for r in rows)
        for r in rows:
            e = execute(r["ref"], r["world"])
            assert e.executable and e.success, (name, r["ref"], e)
