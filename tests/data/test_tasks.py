"""Training rows from a real small collection: shapes, spreads and provenance of each task."""
import json
import random
import re
from collections import Counter

from e2wm.data.health import count_of
from e2wm.data.stories import Place, Story
from e2wm.data.views import CountChooser


def _rows(built_dataset, task):
    return [json.loads(x) for x in (built_dataset / "train" / f"{task}.jsonl").read_text().splitlines()]


def test_plan_rows_give_the_goal_and_condition_objects_and_open_in_their_room(built_dataset):
    rows = _rows(built_dataset, "plan_generation")
    assert rows
    for r in rows:
        query = r["input"].split("\nQ: ")[-1]
        assert re.fullmatch(r"(Q: )?How to [a-z ]+\? Given items include [a-z ,]+\. .*\nA:", query, re.S), query
        assert not r["ref"].startswith(" ") and r["ref"].endswith(".")
        items = query.split("Given items include ")[1].split(". ")[0].split(", ")
        first = r["ref"].split(". ")[0]
        if first.startswith("Walk to ") and first.removeprefix("Walk to ") in items:
            assert first.removeprefix("Walk to ").rstrip(".") in items
    summary = json.loads((built_dataset / "summary.json").read_text())
    assert summary["plans"]["first_room_mismatch"] <= 0.15


def test_counting_answers_spread_and_agree_with_the_chooser(built_dataset):
    rows = _rows(built_dataset, "counting")
    assert rows and all(r["input"].startswith("Given a sequence of actions") for r in rows)
    counts = Counter(count_of(r["ref"]) for r in rows)
    assert max(counts.values()) / len(rows) <= 0.55, counts


def test_the_count_chooser_balances_answers():
    story = Story([], [], [], {}, [Place("on", "desk", []), Place("on", "bed", ["cup"]),
                                   Place("in", "box", ["a", "b"]), Place("on", "x", list("abcde"))])
    chooser = CountChooser(random.Random(0))
    picked = Counter(len(chooser.choose(story).items) for _ in range(30))
    assert picked == {0: 10, 1: 10, 2: 10}     # never 5: the options stop at 4


def test_object_paths_run_two_to_five_rooms_without_revisits(built_dataset):
    rows = _rows(built_dataset, "object_path")
    assert rows
    for r in rows:
        rooms = r["ref"].split(", ")
        assert 2 <= len(rooms) <= 5 and len(set(rooms)) == len(rooms)
        assert r["input"].endswith("appeared?\nAnswer:")
