"""The data card's activity table: every activity of the library and its held-out set with its full
goal, and plans posed with only part of their activity's goal counted and named."""
import dataclasses
import json

from e2wm.data.activity_card import activity_rows, card_lines, partial_goal_line
from e2wm.data.split import load_episodes
from e2wm.data.views import plans
from e2wm.world.activities import ALL_ACTIVITIES, UNSEEN_NAMES, Activity, get_activity


def _row(a) -> str:
    goal = "; ".join(a.goals).replace("|", "\\|")
    return f"| {a.name} | {'held out' if a.name in UNSEEN_NAMES else 'library'} | {goal} | "


def test_the_card_lists_every_activity_with_its_full_goal(built_dataset):
    card = (built_dataset / "README.md").read_text()
    s = json.loads((built_dataset / "summary.json").read_text())
    assert "## Activities and their goals" in card
    table = [x for x in card.splitlines() if x.startswith("| ") and x.count(" | ") == 6]
    for a in ALL_ACTIVITIES:
        assert sum(x.startswith(_row(a)) for x in table) == 1, a.name
    assert [r["activity"] for r in s["activities"]] == [a.name for a in ALL_ACTIVITIES]
    assert all(r["goal"] == list(get_activity(r["activity"]).goals) for r in s["activities"])
    # what the collection planned shows: plans per activity, none of them posed with part of its goal
    eps = plans(load_episodes(built_dataset.parent / "collect"))
    for r in s["activities"]:
        assert r["plans"] == sum(e.activity == r["activity"] for e in eps), r
        assert r["partial_goal_plans"] == 0, r
    assert s["plans"]["partial_goal"] == 0
    assert "- plans posed with only part of their activity's goal: 0\n" in card
    held = {r["activity"] for r in s["activities"] if r["build"].startswith("unseen")}
    assert held and held <= set(s["split"]["unseen_activities"])


def test_a_plan_posed_with_part_of_its_goal_is_counted_and_named(built_dataset):
    """As if collected when the library had dropped one goal spec of an activity."""
    eps = plans(load_episodes(built_dataset.parent / "collect"))
    ep = next(e for e in eps if len(get_activity(e.activity).goals) > 1)
    act = get_activity(ep.activity)
    spec = next(g for g in act.goals if not g.startswith(("agent SITS", "agent LIES")))   # one fact each
    assert act.unmet_specs(ep.goals) == []
    old = dataclasses.replace(ep, goals=[g for g in ep.goals if Activity("probe", (spec,)).unmet_specs([g])])
    assert len(old.goals) == len(ep.goals) - 1 and act.unmet_specs(old.goals) == [spec]
    rows = activity_rows([old if e is ep else e for e in eps], [], set(), None)
    (row,) = [r for r in rows if r["activity"] == ep.activity]
    assert row["partial_goal_plans"] == 1 and sum(r["partial_goal_plans"] for r in rows) == 1
    assert partial_goal_line(rows) == (f"- plans posed with only part of their activity's goal: 1 "
                                       f"({ep.activity} 1; collected under an older activity library)")
    assert any(x.startswith(f"| {ep.activity} |") and x.endswith("| 1 | no training plan |")
               for x in card_lines(rows))
