"""`bench plans`: both planners on the same (activity, apartment) pairs, and its bad input."""
import pytest

from e2wm.bench.plans import parse_planners, run, table
from e2wm.errors import E2WMError
from e2wm.world.activities import get_activity


def test_planners_side_by_side_on_the_same_pairs():
    """Two activities in apartments 0-6 (13 pairs), 150 simulations, one spawned process: ~3 s."""
    acts = [get_activity("wash clothes"), get_activity("turn on light")]
    r = run(scenes=7, simulations=150, workers=1, activities=acts)
    rows = r["planners"]
    assert list(rows) == ["uniform", "goal"]
    assert r["pairs"] > 0 and rows["uniform"]["posed"] == rows["goal"]["posed"] == r["pairs"]
    for row in rows.values():
        assert 0 <= row["succeeded"] <= row["posed"]
        assert row["plans_longer_than_shortest"] == 0   # the plan is the shortest found, then pruned
        if row["succeeded"]:
            assert row["mean_plan_lines"] <= row["mean_shortest_found"]
    # the washing machine's ordering trap: at this budget only goal-aware rollouts get through it
    assert rows["goal"]["succeeded"] == rows["goal"]["posed"] > rows["uniform"]["succeeded"]
    assert rows["uniform"]["failures"].get("wash clothes")
    text = table(r)
    assert "median sims to 1st solution" in text and "plans per core-hour" in text


@pytest.mark.parametrize("text", ["", "greedy", "uniform,greedy", " , "])
def test_bad_planner_names_fail_with_one_clear_line(text):
    with pytest.raises(E2WMError, match=r"--planners .*uniform,goal|--planners .*goal,uniform"):
        parse_planners(text)


def test_planner_names_are_parsed_in_order_without_repeats():
    assert parse_planners("goal, uniform,goal") == ("goal", "uniform")
