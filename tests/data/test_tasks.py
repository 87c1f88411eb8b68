"""The training tasks: exact rows from hand-made episodes, exemplars from other episodes only."""
import random

from e2wm.collect.episodes import Episode
from e2wm.collect.explore import ExploreConfig, explore_episode
from e2wm.data.stories import tell
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from test_stories import scripted_episode

TASKS = (plan_generation, activity_recognition, counting, object_path)


def plan_episode(activity, lines, conditions=(), success=True, key=None):
    return Episode(key=key or activity, kind="plan", scene="procedural:0", seed=0, unit=0,
                   activity=activity, conditions=list(conditions), success=success,
                   steps=[{"agent": 0, "line": l, "ok": True, "satisfied": 0} for l in lines])


COOK = plan_episode("cook some food", ["[Walk] <dining_room> (7)", "[Walk] <microwave> (3)"],
                    ["<microwave> (3) || OFF", "<freezer> (4) || INSIDE || <dining_room> (7)",
                     "<food_food> (5) || INSIDE || <dining_room> (7)"])
RELAX = plan_episode("relax", ["[Walk] <home_office> (2)", "[Walk] <sofa> (9)", "[Lie] <sofa> (9)"],
                     ["<sofa> (9) || INSIDE || <home_office> (2)"])
FAILED = plan_episode("sleep", ["[Walk] <bed> (4)"], success=False)
COOK_Q = ("Q: How to cook some food? Given items include microwave, freezer, dining room, food. "
          "The microwave is off. The freezer is in the dining room. "
          "The food is in the dining room.\nA:")
RELAX_QA = ("Q: How to relax? Given items include sofa, home office. "
            "The sofa is in the home office.\n"
            "A: Walk to home office. Walk to sofa. Lie on sofa.")


def test_plan_generation_rows():
    rows = plan_generation.build([COOK, FAILED, RELAX], random.Random(0))
    assert rows[0] == {"task": "plan_generation", "input": RELAX_QA + "\n\n" + COOK_Q,
                       "ref": " Walk to dining room. Walk to microwave.", "weight": 1.0}
    assert rows[1]["input"].endswith("\n\n" + RELAX_QA.split("\nA:")[0] + "\nA:")
    assert len(rows) == 2   # the failed plan gives no row


def test_activity_recognition_rows():
    rows = activity_recognition.build([COOK, RELAX, FAILED], random.Random(0), shots=1)
    assert rows[1] == {
        "task": "activity_recognition", "weight": 0.7, "ref": " relax",
        "input": "Given a household activity plan as follows:\n"
                 "Walk to dining room. Walk to microwave.\n"
                 "Q: What is the name of the activity?\nA: cook some food\n\n"
                 "Given a household activity plan as follows:\nWalk to home office. Walk to sofa. "
                 "Lie on sofa.\nQ: What is the name of the activity?\nA:"}


def test_counting_answers():
    assert counting.answer("on", "floor", []) == "There is no item on the floor."
    assert counting.answer("on", "desk", ["rug"]) == "There is one item on the desk. It is the rug."
    assert counting.answer("in", "box", ["book", "mug"]) == (
        "There are 2 items in the box. They are the book and the mug.")
    assert counting.answer("on", "coffee table", ["cell phone", "folder", "rug"]) == (
        "There are 3 items on the coffee table. They are the cell phone, the folder, and the rug.")


def test_counting_row_of_the_scripted_episode():
    ep = scripted_episode()
    seen = set()
    for seed in range(40):
        (row,) = counting.build([ep], random.Random(seed))
        story = tell(ep, random.Random(seed)).text()   # the first draws of the task's rng
        expected = {"coffee table": " There is no item on the coffee table.",
                    "desk": " There is one item on the desk. It is the beer.",
                    "bed": " There is one item on the bed. It is the soap."}
        place = next(p for p in expected if row["ref"] == expected[p])
        assert row == {"task": "counting", "weight": 1.0, "ref": expected[place],
                       "input": f"{counting.INSTRUCTION}\n\nQ: {story} How many items are there "
                                f"on the {place}?\nA:"}
        seen.add(place)
    assert seen == {"coffee table", "desk", "bed"}


def test_object_path_row_of_the_scripted_episode():
    ep = scripted_episode()
    paths = {"kettle": " kitchen, living room, kids bedroom", "beer": " living room, kids bedroom",
             "soap": " bathroom, bedroom"}
    seen = set()
    for seed in range(20):
        (row,) = object_path.build([ep], random.Random(seed))
        story = tell(ep, random.Random(seed)).text()
        obj = next(o for o in paths if row["ref"] == paths[o])
        assert row == {"task": "object_path", "weight": 1.0, "ref": paths[obj],
                       "input": f"{story}\nQuestion: What is the order of the rooms where "
                                f"the {obj} appeared?\nAnswer:"}
        seen.add(obj)
    assert seen == set(paths)


def explore_episodes(n=6):
    return [explore_episode(f"procedural:{i}", ExploreConfig(), seed=i) for i in range(n)]


def test_exemplars_come_from_other_episodes_and_seeds_decide():
    eps, plans = explore_episodes(), [COOK, RELAX, plan_episode("rest", ["[Sit] <sofa> (9)"])]
    for task in TASKS:
        episodes = plans if task in (plan_generation, activity_recognition) else eps
        rows = task.build(episodes, random.Random(5))
        assert rows and rows == task.build(episodes, random.Random(5))
        queries = [r["input"].split("\n\n")[-1] for r in rows]
        assert len(set(queries)) == len(rows)
        answers = {q + r["ref"] for q, r in zip(queries, rows)}
        head = [counting.INSTRUCTION] if task is counting else []
        for row, query in zip(rows, queries):
            blocks = row["input"].split("\n\n")
            assert blocks[:len(head)] == head
            shots = blocks[len(head):-1]
            assert len(shots) == min(task.SHOTS, len(rows) - 1)
            assert set(shots) <= answers and query + row["ref"] not in shots
            assert row["ref"].startswith(" ") and not row["ref"].endswith("\n")
            assert row["task"] == task.TASK and row["weight"] == task.WEIGHT
