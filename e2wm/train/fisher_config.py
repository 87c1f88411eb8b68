"""The config of one `e2wm fisher` run: its fields are the command's flags and the pipeline's `fisher` section."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from e2wm.config import check_ranges, field_doc as _help
from e2wm.errors import E2WMError

MAX_LENGTH = 1 << 17   # tokens per sample; longer than any context a model of ours has


@dataclass(frozen=True)
class FisherConfig:
    """The empirical Fisher diagonal of a model's base weights on general text."""
    model: str = field(default="tiny", **_help("HF path or id; `tiny` = built-in tiny Llama, byte tokens"))
    corpus: str = field(default="builtin:pydoc", **_help(".txt, .jsonl, datasets dir, or builtin:pydoc"))
    out: str = field(default="out/fisher", **_help("output directory"))
    max_samples: int | None = field(default=None, **_help("the corpus's first N documents (default: all)",
                                                          range=(1, 10**8)))
    max_length: int = field(default=256, **_help("tokens per document", range=(2, MAX_LENGTH)))
    modules: Literal["lora-targets", "all"] = field(default="lora-targets", **_help(
        "the weights covered: the LoRA targets' or every one"))
    lora_targets: str | None = field(default=None, **_help(
        "comma-separated module names (default: per architecture)"))
    micro_batch: int = field(default=8, **_help("documents per forward", range=(1, 4096)))
    method: Literal["batch", "loop"] = field(default="batch", **_help(
        "batch: linear weights' per-sample squares from one backward per micro-batch; loop: one backward per "
        "sample (the reference)"))
    zero_stage: Literal[0, 2, 3] | None = field(default=None, **_help(
        "DeepSpeed ZeRO stage (default: plain single process, or 0 under a launcher)"))
    checkpoint_every: int = field(default=0, **_help("checkpoint partial sums every K samples (0: never)",
                                                     range=(0, 10**9)))
    precision: Literal["fp32", "bf16"] = field(default="fp32", **_help(
        "the weights and the forward/backward: fp32, or bf16 (half the weight memory, bf16 matmuls); the "
        "per-sample squares are summed in fp32 either way"))
    gradient_checkpointing: bool = field(default=False, **_help(
        "recompute each decoder layer's activations in backward, so saved activations are one layer's, "
        "not every layer's (F unchanged)"))

    def __post_init__(self):
        check_ranges(self, "fisher.")
        self.targets()

    def targets(self) -> list[str] | None:
        """The LoRA target module names, or None for the architecture's default."""
        if self.lora_targets is None:
            return None
        names = [t.strip() for t in self.lora_targets.split(",")]
        if not all(names):
            raise E2WMError(f"--lora-targets {self.lora_targets!r}: expected comma-separated module names, "
                            f"e.g. q_proj,v_proj")
        return names
