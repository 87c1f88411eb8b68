"""How `e2wm build-data` splits episodes and builds rows."""
from __future__ import annotations

from dataclasses import dataclass, field

from e2wm.config import build, to_plain
from e2wm.data.prompts import STYLES
from e2wm.errors import E2WMError


@dataclass(frozen=True)
class DataConfig:
    """How `e2wm build-data` splits episodes and builds rows."""
    seed: int = field(default=0, metadata={"help": "split and sampling seed"})
    eval_fraction: float = field(default=0.2, metadata={"help": "share of scenes held out for evaluation"})
    unseen_fraction: float = field(default=0.0, metadata={
        "help": "share of the library's activities held out for the \"unseen\" suites, besides its "
                "held-out set (which never trains)"})
    template: str = field(default="e2wm", metadata={
        "help": "prompt templates: e2wm (E2WM's released files, exactly) | uniform (every suite in its "
                "training task's words)"})
    min_suite_rows: int = field(default=1, metadata={
        "help": "fail, naming the suite, when an evaluation suite ends up with fewer rows"})
    weights: dict[str, float] = field(default_factory=dict, metadata={
        "help": "task -> loss weight (default 1 / 0.7 / 1 / 1)"})
    ngram: int = field(default=8, metadata={"help": "leak guard: n-gram length"})
    threshold: float = field(default=0.5, metadata={
        "help": "leak guard: an eval item leaks when this share of its n-grams is in training"})

    def __post_init__(self):
        for name in ("eval_fraction", "unseen_fraction", "threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise E2WMError(f"data config: {name}={v!r}: must be a number in [0, 1]")
        if self.template not in STYLES:
            raise E2WMError(f"data config: template={self.template!r}: must be one of {', '.join(STYLES)}")
        if not isinstance(self.min_suite_rows, int) or self.min_suite_rows < 0:
            raise E2WMError(f"data config: min_suite_rows={self.min_suite_rows!r}: must be an int >= 0")
        if not isinstance(self.ngram, int) or self.ngram < 2:
            raise E2WMError(f"data config: ngram={self.ngram!r}: must be an int >= 2")
        if not isinstance(self.weights, dict) or not all(isinstance(v, (int, float)) for v in self.weights.values()):
            raise E2WMError(f"data config: weights={self.weights!r}: must map task names to numbers")

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "data config") -> "DataConfig":
        return build(cls, d, where)
