"""The config of one `e2wm eval` run."""
from __future__ import annotations

from dataclasses import dataclass, field

from e2wm.config import check_ranges
from e2wm.errors import E2WMError


@dataclass(frozen=True)
class EvalConfig:
    """One `e2wm eval` run; its scalar fields are the command's flags."""
    model: str = field(default="tiny", metadata={"help": "a local directory, a hub id, or tiny"})
    adapter: str | None = field(default=None, metadata={
        "help": "a LoRA adapter directory (`e2wm export` output)"})
    suites: tuple[str, ...] = ()        # directories (every *.json / *.jsonl in them) or files
    only: tuple[str, ...] = ()          # suite names to keep (file stems)
    limit: int = field(default=0, metadata={"help": "items per suite (0: all)", "range": (0, 10_000_000)})
    out: str = field(default="out/eval", metadata={"help": "where results.json and results.md go"})
    num_beams: int = field(default=4, metadata={"help": "beam width for generation (1: greedy)",
                                                "range": (1, 64)})
    max_new_tokens: int = field(default=256, metadata={"help": "generation length", "range": (1, 32_768)})
    stop: str = field(default="newline", metadata={
        "help": "newline: each item ends at its first newline, as only the first line is kept (greedy first lines "
                "unchanged); eos: at EOS or max_new_tokens, as E2WM's eval_gen.py (beam results may differ)"})
    gen_batch: int = field(default=16, metadata={"help": "generation prompts decoded together (left-padded)",
                                                 "range": (1, 4096)})
    mc_batch: int = field(default=16, metadata={
        "help": "multiple-choice items scored together (their prompts in one pass, each prompt's cache repeated "
                "over its options)", "range": (1, 4096)})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on an accelerator, fp32 on CPU), bf16, fp16 or fp32: the dtype the weights load in"})
    placement: str = field(default="replicate", metadata={
        "help": "replicate: each rank holds the whole model on its device; spread: the model's layers spread "
                "over this rank's share of the node's devices, the rest in host memory (models larger than "
                "one device)"})
    device_memory: float = field(default=0.0, metadata={
        "help": "with --placement spread: GiB of weights per device (0: what is free)", "range": (0.0, 1e6)})
    ppl_corpus: str | None = field(default=None, metadata={
        "help": "general text for perplexity: .txt, .jsonl, a datasets dir or builtin:pydoc"})
    ppl_docs: int = field(default=200, metadata={
        "help": "its last N documents (the Fisher reads the first)", "range": (1, 10_000_000)})
    ppl_max_length: int = field(default=800, metadata={"help": "tokens per document", "range": (2, 1_000_000)})
    ppl_stride: int | None = field(default=None, metadata={
        "help": "sliding window stride (default: truncate)", "range": (1, 1_000_000)})
    fisher: str | None = field(default=None, metadata={
        "help": "the Fisher file (or its directory): the perplexity documents must not be its samples"})

    def __post_init__(self):
        check_ranges(self, "eval: ")
        if self.stop not in ("newline", "eos"):
            raise E2WMError(f"eval: stop={self.stop!r}: must be newline or eos")
        for name, allowed in (("precision", ("auto", "bf16", "fp16", "fp32")), ("placement", ("replicate", "spread"))):
            if getattr(self, name) not in allowed:
                raise E2WMError(f"eval: {name}={getattr(self, name)!r}: must be "
                                f"{', '.join(allowed[:-1])} or {allowed[-1]}")
