"""Every template against E2WM's released rows (../shared/notes: e2wm-templates), and defined once."""
import random
import re
from pathlib import Path

import pytest

import e2wm
from e2wm.data.prompts import COUNT_INSTRUCTION, Templates, answer_count
from e2wm.data.tasks import assemble

T = Templates("e2wm")


def test_plan_generation_row_is_e2wms():
    # train_plan_gen.json, 3rd row, verbatim
    expected = ("Q: How to greet guests? Given items include man, home office, woman. The man is in the home "
                "office. The woman is in the home office.\nA: Walk to home office. Walk to woman.\nQ: How to "
                "relax? Given items include home office, sofa. The sofa is in the home office.\nA: Walk to home "
                "office. Walk to sofa. Lie on sofa.\nQ: How to cook some food? Given items include oven, dining "
                "room, food food, bowl. The oven is off. The oven is in the dining room. The bowl is in the "
                "dining room. The food food is in the dining room.\nA:")
    examples = [
        (T.plan_query("greet guests", ["man", "home office", "woman"],
                      ["The man is in the home office.", "The woman is in the home office."]),
         "Walk to home office. Walk to woman."),
        (T.plan_query("relax", ["home office", "sofa"], ["The sofa is in the home office."]),
         "Walk to home office. Walk to sofa. Lie on sofa."),
        (T.plan_query("cook some food", ["oven", "dining room", "food food", "bowl"],
                      ["The oven is off.", "The oven is in the dining room.", "The bowl is in the dining room.",
                       "The food food is in the dining room."]),
         "Walk to dining room. Walk to oven. Grab bowl. Put bowl on oven."),
    ]
    rows = assemble("plan_generation", examples, random.Random(0), 2, 1.0, T)
    assert rows[2]["input"] in (expected, _swap_first_two(expected))
    assert rows[2]["ref"] == "Walk to dining room. Walk to oven. Grab bowl. Put bowl on oven."
    assert T.plan_query("x", ["chair"], []) == "Q: How to x? Given items include chair. \nA:"   # as released


def _swap_first_two(text):
    blocks = re.split(r"\n(?=Q: )", text)
    return "\n".join([blocks[1], blocks[0], *blocks[2:]])


def test_activity_recognition_training_and_suite_rows_are_e2wms():
    # train_act_recog.json (blocks joined by a blank line) and eval act_recog.json (a single newline)
    q1 = T.recognition_query("Walk to home office. Walk to dresser.")
    assert T.prompt("activity_recognition", [T.solved("activity_recognition", q1, "vacuum carpet")],
                    T.recognition_query("Walk to dining room.")) == (
        "Given a household activity plan as follows:\nWalk to home office. Walk to dresser.\nQ: What is the "
        "name of the activity?\nA: vacuum carpet\n\nGiven a household activity plan as follows:\nWalk to "
        "dining room.\nQ: What is the name of the activity?\nA:")
    q = T.recognition_suite_query("Walk to home office. Walk to painting.")
    assert T.prompt("act_recog", [T.solved("act_recog", q, "look at painting")],
                    T.recognition_suite_query("Walk to home office. Walk to lightswitch.")) == (
        "Given a task plan: Walk to home office. Walk to painting.\nQuestion: what is the name of this "
        "task?\nAnswer: look at painting\nGiven a task plan: Walk to home office. Walk to lightswitch.\n"
        "Question: what is the name of this task?\nAnswer:")


def test_counting_rows_are_e2wms():
    assert answer_count("on", "floor", []) == "There is no item on the floor."
    assert answer_count("on", "bookshelf", ["plate"]) == "There is one item on the bookshelf. It is the plate."
    assert answer_count("on", "coffee table", ["cell phone", "rug", "folder"]) == (
        "There are 3 items on the coffee table. They are the cell phone, the rug, and the folder.")
    q = T.count_query("Andrew was at home.", "on", "nightstand")
    assert q == "Q: Andrew was at home. How many items are there on the nightstand?\nA:"
    row = assemble("counting", [(q, "There is no item on the nightstand."), (q, "x")], random.Random(0), 3,
                   1.0, T, head=COUNT_INSTRUCTION)[1]
    assert row["input"] == (f"{COUNT_INSTRUCTION}\n\n{q} There is no item on the nightstand.\n\n{q}")
    assert T.prompt("count_qa", [T.solved("count_qa", q, "1")], q) == f"{q} 1\n\n{q}"


def test_story_suites_and_activity_qa_are_e2wms():
    assert T.path_query("Anna took the hat.", "hat") == (
        "Anna took the hat.\nQuestion: What is the order of the rooms where the hat appeared?\nAnswer:")
    assert T.location_query("S.", "fork", "after", "dining room") == (
        "S.\nQuestion: Where was the fork after the dining room?\nAnswer:")
    assert T.housework_query("wash clothes") == (
        "Question: To wash clothes, a possibly related item could be\nAnswer:")
    assert T.neg_housework_query("wash clothes", ["clothes dress", "laundry detergent", "milkshake",
                                                  "washing machine"]) == (
        "Question: To wash clothes, a unrelated item could be\nA: clothes dress\nB: laundry detergent\n"
        "C: milkshake\nD: washing machine\nAnswer:")
    q = T.inference_query("Mary is close to dresser.")
    assert T.solved("act_infer", q, "clean room") == (
        "Mary is close to dresser.\nQuestion: Given the above state, a possible activity could be\n"
        "Answer:clean room")                                  # glued, as released
    uniform = Templates("uniform")
    assert uniform.solved("act_infer", q, "clean room").endswith("Answer: clean room")
    assert uniform.recognition_suite_query("P.") == uniform.recognition_query("P.")
    assert uniform.separator("plan_generation") == "\n\n"
    with pytest.raises(e2wm.errors.E2WMError, match="template style"):
        Templates("fancy")


def test_every_template_is_defined_once():
    """Template phrases live in e2wm/data/prompts.py only: a second copy would drift."""
    phrases = ("Given items include", "What is the name of the activity", "Given a task plan",
               "How many items are there", "What is the order of the rooms", "possibly related item",
               "unrelated item", "Given the above state", "Question: ", "Given a sequence of actions")
    root = Path(e2wm.__file__).parent
    for f in root.rglob("*.py"):
        if f.name == "prompts.py" and f.parent.name == "data":
            continue
        text = f.read_text()
        found = [p for p in phrases if p in text]
        assert not found, f"{f.relative_to(root)} defines template text {found}: use e2wm.data.prompts"
    text = (root / "data" / "prompts.py").read_text()
    assert all(text.count(p) == 1 for p in phrases if p != "Question: "), "a phrase is written twice"
