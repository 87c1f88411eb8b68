"""How `e2wm build-data` splits episodes and builds rows."""
from __future__ import annotations

from dataclasses import dataclass, field

from e2wm.config import build, check_ranges, to_plain
from e2wm.data.prompts import STYLES
from e2wm.errors import E2WMError


@dataclass(frozen=True)
class DataConfig:
    """How `e2wm build-data` splits episodes and builds rows."""
    seed: int = field(default=0, metadata={"help": "split and sampling seed", "range": (0, 2**32 - 1)})
    eval_fraction: float = field(default=0.2, metadata={"help": "share of scenes held out for evaluation",
                                                        "range": (0.0, 1.0)})
    unseen_fraction: float = field(default=0.0, metadata={
        "help": "share of the library's activities held out for the \"unseen\" suites, besides its "
                "held-out set (which never trains)", "range": (0.0, 1.0)})
    template: str = field(default="e2wm", metadata={
        "help": "prompt templates: e2wm (E2WM's released files, exactly) | uniform (every suite in its "
                "training task's words)"})
    min_suite_rows: int = field(default=1, metadata={
        "help": "fail, naming the suite, when an evaluation suite ends up with fewer rows",
        "range": (0, 10_000_000)})
    heldout_rows: int = field(default=64, metadata={
        "help": "rows of each training task held out of training (whole episodes, at most a quarter of the "
                "task's) and written as the evaluation suite heldout_<task>; 0: none", "range": (0, 10_000_000)})
    weights: dict[str, float] = field(default_factory=dict, metadata={
        "help": "task -> loss weight (default 1 / 0.7 / 1 / 1)"})
    ngram: int = field(default=8, metadata={"help": "leak guard: n-gram length", "range": (2, 64)})
    threshold: float = field(default=0.5, metadata={
        "help": "leak guard: an eval item leaks when this share of its n-grams is in training",
        "range": (0.0, 1.0)})

    def __post_init__(self):
        check_ranges(self, "data config: ")
        if self.template not in STYLES:
            raise E2WMError(f"data config: template={self.template!r}: must be one of {', '.join(STYLES)}")
        if not isinstance(self.weights, dict):
            raise E2WMError(f"data config: weights={self.weights!r}: must map task names to numbers")
        from e2wm.data.builder import TASKS
        names = [m.TASK for m in TASKS]
        for task, w in self.weights.items():
            if task not in names:
                raise E2WMError(f"data config: weights.{task}: unknown task; known: {', '.join(names)}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1000:
                raise E2WMError(f"data config: weights.{task}={w!r}: must be a number in [0, 1000]")

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "data config") -> "DataConfig":
        return build(cls, d, where)
