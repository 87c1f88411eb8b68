"""Every prompt template, defined once: training rows and evaluation suites both build from here.

Style "e2wm" (the default) reproduces the released E2WM files exactly (../notes: e2wm-templates):
the markers ("Q:"/"A:" or "Question:"/"Answer:"), the separators between few-shot blocks ("\\n" for
plan generation and the activity-recognition suite, "\\n\\n" elsewhere), the suite templates that
differ from their training task (activity recognition), the exemplar answer glued to "Answer:"
in activity inference, the options written into the negation housework prompt, and refs and
answers without a leading space: a row's training text is f"{input} {ref}\\n", and an option is
scored as f"{input} {option}". Style "uniform" asks each suite's question in its training task's
words and separates every block with a blank line, so a model trained here meets no format shift
on these suites (at the price of one on E2WM's own files).
"""
from __future__ import annotations

from dataclasses import dataclass

from e2wm.errors import E2WMError

STYLES = ("e2wm", "uniform")
COUNT_INSTRUCTION = ("Given a sequence of actions in a house, and a question about what items are "
                     "located in a specific place. Answer the number of items and list the items.")
COUNT_OPTIONS = ("0", "1", "2", "3", "4")
LETTERS = "ABCDEFGH"


def answer_count(prep: str, receptacle: str, items: list[str]) -> str:
    """E2WM's counting answer sentence ("one" in words, 2 and up in digits, an Oxford comma)."""
    place = f"{prep} the {receptacle}"
    if not items:
        return f"There is no item {place}."
    if len(items) == 1:
        return f"There is one item {place}. It is the {items[0]}."
    the = [f"the {t}" for t in items]
    listed = " and ".join(the) if len(the) == 2 else ", ".join(the[:-1]) + ", and " + the[-1]
    return f"There are {len(items)} items {place}. They are {listed}."


@dataclass(frozen=True)
class Templates:
    style: str = "e2wm"

    def __post_init__(self):
        if self.style not in STYLES:
            raise E2WMError(f"template style {self.style!r}: must be one of {', '.join(STYLES)}")

    # ---- plan generation (training task and the four plan suites) ----------------------------------
    def plan_query(self, activity: str, items, states) -> str:
        return f"Q: How to {activity}? Given items include {', '.join(items)}. {' '.join(states)}\nA:"

    # ---- activity recognition ---------------------------------------------------------------------
    def recognition_query(self, plan: str) -> str:
        return f"Given a household activity plan as follows:\n{plan}\nQ: What is the name of the activity?\nA:"

    def recognition_suite_query(self, plan: str) -> str:
        if self.style == "uniform":
            return self.recognition_query(plan)
        return f"Given a task plan: {plan}\nQuestion: what is the name of this task?\nAnswer:"

    # ---- activity inference and housework ----------------------------------------------------------
    def inference_query(self, state: str) -> str:
        return f"{state}\nQuestion: Given the above state, a possible activity could be\nAnswer:"

    def housework_query(self, activity: str) -> str:
        return f"Question: To {activity}, a possibly related item could be\nAnswer:"

    def neg_housework_query(self, activity: str, options) -> str:
        listed = "".join(f"\n{LETTERS[i]}: {o}" for i, o in enumerate(options))
        return f"Question: To {activity}, a unrelated item could be{listed}\nAnswer:"

    # ---- stories -------------------------------------------------------------------------------------
    def count_query(self, story: str, prep: str, receptacle: str) -> str:
        return f"Q: {story} How many items are there {prep} the {receptacle}?\nA:"

    def path_query(self, story: str, obj: str) -> str:
        return f"{story}\nQuestion: What is the order of the rooms where the {obj} appeared?\nAnswer:"

    def location_query(self, story: str, obj: str, when: str, room: str) -> str:
        return f"{story}\nQuestion: Where was the {obj} {when} the {room}?\nAnswer:"

    def story_query(self, story: str, question: str) -> str:
        return f"{story}\nQuestion: {question}\nAnswer:"

    # ---- assembling ------------------------------------------------------------------------------------
    def separator(self, kind: str) -> str:
        """Between few-shot blocks: E2WM joined plan-generation blocks and the activity-recognition
        suite's with one newline, everything else with a blank line."""
        if self.style == "e2wm" and kind in ("plan_generation", "act_recog"):
            return "\n"
        return "\n\n"

    def solved(self, kind: str, query: str, answer: str) -> str:
        """An exemplar: its query and answer (E2WM's activity inference glued them: "Answer:x")."""
        glue = "" if self.style == "e2wm" and kind == "act_infer" else " "
        return f"{query}{glue}{answer}"

    def prompt(self, kind: str, exemplars, query: str, head: str | None = None) -> str:
        """Few-shot exemplars (already `solved`), then the query; an instruction `head` first."""
        body = self.separator(kind).join([*exemplars, query])
        return f"{head}\n\n{body}" if head else body
