"""`e2wm train` configuration: one dataclass per section, read from YAML (`e2wm/presets/train*.yaml`).

Every field can be overridden with `--set section.key=value`. `validate(cfg, world)` checks what
needs the world size or the file system, so a bad config fails in one line before any model loads.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from e2wm.config import build, check_ranges, field_doc as _help, read_yaml, to_plain
from e2wm.errors import E2WMError


MAX_TOKENS = 1 << 17      # tokens per row: beyond any context window of the models we train
MAX_STEPS = 10**8
MAX_ROWS = 10**6          # rows per batch
SAMPLINGS = ("shuffle", "length_grouped")   # data.sampling: how rows form global batches (train/data.py)


def _nonempty(field_name: str, value: str) -> None:
    if not value.strip():
        raise E2WMError(f"{field_name}: must not be empty")


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = field(default="tiny", **_help("`tiny`, `shape:gpt-neo-1.3b|gpt-j-6b|llama-13b`, a local "
                                                        "directory or a hub id"))
    gradient_checkpointing: bool = field(default=False, **_help("recompute activations in backward"))
    trust_remote_code: bool = False

    def __post_init__(self):
        _nonempty("model.name_or_path", self.name_or_path)


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = field(default=True, **_help("false: full fine-tuning (the `ewc` column of Table 2)"))
    r: int = field(default=8, **_help("rank of the adapter", range=(1, 4096)))
    alpha: int = field(default=32, **_help("scaling numerator (ΔW = alpha / r · B·A)", range=(1, 65536)))
    dropout: float = field(default=0.1, **_help("dropout on the adapter's input, in [0, 1)", range=(0.0, 1.0)))
    target_modules: tuple[str, ...] = field(default=(), **_help("empty: the architecture's default"))

    def __post_init__(self):
        check_ranges(self, "lora.")
        if self.dropout >= 1:
            raise E2WMError(f"lora.dropout={self.dropout!r}: must be in [0, 1)")
        for i, name in enumerate(self.target_modules):
            if not name.strip():
                raise E2WMError(f"lora.target_modules[{i}]: an empty module name")
        if len(set(self.target_modules)) != len(self.target_modules):
            raise E2WMError(f"lora.target_modules: a module is named twice ({list(self.target_modules)})")


@dataclass(frozen=True)
class TrainDataConfig:
    path: str = field(default="out/data", **_help("an `e2wm build-data` output, its hf/ DatasetDict, a JSONL "
                                                   "file or a directory of JSONL files"))
    max_length: int = field(default=800, **_help("tokens per row; see `truncation` for longer rows",
                                                 range=(2, MAX_TOKENS)))
    truncation: Literal["prompt_start", "end"] = field(default="prompt_start", **_help(
        "a row over max_length loses the start of its prompt (prompt_start), or its end, the answer first, "
        "as E2WM's tokenizer truncation did (end)"))
    task_weights: dict[str, float] = field(default_factory=dict, **_help("override a task's loss weight"))
    sampling: Literal[SAMPLINGS] = field(default="shuffle", **_help(
        "shuffle: E2WM's uniformly shuffled global batches; length_grouped: rows of similar length in a batch "
        "(less padding, but the tokens of short-answer tasks weigh more)"))
    group_batches: int = field(default=16, **_help("length_grouped: global batches per length-sorted group",
                                                   range=(1, 10**6)))
    pad_to_multiple_of: int = field(default=8, **_help("pad micro-batches to a multiple of this", range=(1, 1024)))

    def __post_init__(self):
        _nonempty("data.path", self.path)
        check_ranges(self, "data.")
        for task, w in self.task_weights.items():
            if not 0 <= w <= 1e6:
                raise E2WMError(f"data.task_weights.{task}={w!r}: must be in [0, 1000000.0]")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = field(default=8e-4, **_help("peak learning rate", range=(0.0, 10.0)))
    weight_decay: float = field(default=0.0, **_help("AdamW's decoupled weight decay", range=(0.0, 10.0)))
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = field(default=1e-8, **_help("AdamW's epsilon", range=(0.0, 1.0)))
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = field(default=0, **_help("steps of linear warm-up", range=(0, MAX_STEPS)))
    epochs: int = field(default=3, **_help("passes over the data (unless max_steps)", range=(1, 10**4)))
    max_steps: int = field(default=0, **_help("> 0: stop after this many steps (and schedule over them)",
                                              range=(0, MAX_STEPS)))
    global_batch_size: int = field(default=20, **_help("rows per optimizer step, whatever the world size",
                                                       range=(1, MAX_ROWS)))
    micro_batch_size: int = field(default=4, **_help("rows per forward on one rank", range=(1, MAX_ROWS)))
    loss_groups: int = field(default=1, **_help(
        "the global batch's rows, in sampled order, form this many groups, each normalised by its own answer "
        "tokens, and the groups are averaged (E2WM: one per forward: 1 in its 1.3B script, 4 in its 6B script)",
        range=(1, MAX_ROWS)))
    grad_clip: float = field(default=1.0, **_help("0: no clipping", range=(0.0, 1e6)))
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"

    def __post_init__(self):
        check_ranges(self, "optim.")
        if not self.lr > 0:
            raise E2WMError(f"optim.lr={self.lr!r}: must be > 0")
        if not self.eps > 0:
            raise E2WMError(f"optim.eps={self.eps!r}: must be > 0")
        if not all(isinstance(b, float) and 0 <= b < 1 for b in self.betas):
            raise E2WMError(f"optim.betas={list(self.betas)!r}: each must be in [0, 1)")


@dataclass(frozen=True)
class RegularizerConfig:
    kind: Literal["none", "ewc_lora", "ewc", "kl"] = "ewc_lora"
    lam: float = field(default=2.0, **_help("λ, the weight of the penalty", range=(0.0, 1e12)))
    fisher: str = field(default="", **_help("an `e2wm fisher` output (ewc_lora, ewc)"))
    fisher_scale: Literal["e2wm_int8", "raw", "mean", "uniform"] = field(default="e2wm_int8", **_help(
        "what the penalty multiplies: e2wm_int8 (E2WM's row-wise int8 codes of F, 0-127, on which its λ was "
        "set), raw (F as computed), mean (F / its mean over the covered weights) or uniform (1 everywhere: "
        "the L2 control, as strong as mean at the same λ)"))
    corpus: str = field(default="builtin:pydoc", **_help("general text for `kl` (as `e2wm fisher --corpus`)"))
    kl_batch_size: int = field(default=4, **_help("general-text rows per step for `kl`, over all ranks",
                                                  range=(1, MAX_ROWS)))
    kl_max_length: int = field(default=256, **_help("tokens per general-text row for `kl`", range=(2, MAX_TOKENS)))
    corpus_start: int = field(default=0, **_help("`kl` reads the corpus's documents from this one on (so that "
                                                 "they can be kept apart from evaluation's)", range=(0, 10**8)))
    corpus_end: int | None = field(default=None, **_help("... up to this one, excluded (unset: to the end)",
                                                         range=(1, 10**8)))

    def __post_init__(self):
        check_ranges(self, "regularizer.")
        if self.corpus_end is not None and self.corpus_end <= self.corpus_start:
            raise E2WMError(f"regularizer.corpus_end={self.corpus_end}: must be above "
                            f"regularizer.corpus_start={self.corpus_start}")


@dataclass(frozen=True)
class DeepSpeedSection:
    config: str = field(default="zero2", **_help("zero2 | zero3 | zero3_offload (ds_configs/) or a JSON path"))
    zero_stage: int | None = field(default=None, **_help("override the JSON's zero_optimization.stage"))

    def __post_init__(self):
        _nonempty("deepspeed.config", self.config)
        if self.zero_stage is not None and self.zero_stage not in (0, 1, 2, 3):
            raise E2WMError(f"deepspeed.zero_stage: must be 0, 1, 2 or 3, got {self.zero_stage!r}")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = field(default=100, **_help("steps between checkpoints (0: only at the end)", range=(0, MAX_STEPS)))
    keep_last: int = field(default=2, **_help("checkpoints kept", range=(1, 1000)))
    resume: str = field(default="auto", **_help("auto (the latest under out/checkpoints), never, or a step dir"))
    snapshots: tuple[int, ...] = field(default=(), **_help(
        "optimizer steps at which the adapter (or model) is also exported, to out/snapshots/step-K, so that one "
        "run gives several points of its learning curve (a step at or past the last one is the final export)"))

    def __post_init__(self):
        _nonempty("checkpoint.resume", self.resume)
        check_ranges(self, "checkpoint.")
        check_steps(self.snapshots, "checkpoint.snapshots")


def check_steps(steps, where: str) -> None:
    """`steps` are optimizer steps: whole numbers in [1, MAX_STEPS], none given twice."""
    for i, k in enumerate(steps):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_STEPS:
            raise E2WMError(f"{where}[{i}]={k!r}: a step is an int in [1, {MAX_STEPS}]")
    if len(set(steps)) != len(steps):
        raise E2WMError(f"{where}: a step is given twice ({list(steps)})")


@dataclass(frozen=True)
class LoggingConfig:
    every: int = field(default=10, **_help("steps between log lines", range=(1, MAX_STEPS)))
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "e2wm"
    peak_tflops: float = field(default=0.0, **_help("per-device peak for MFU; 0: known GPUs only", range=(0.0, 1e6)))

    def __post_init__(self):
        check_ranges(self, "logging.")
        if self.wandb and importlib.util.find_spec("wandb") is None:
            raise E2WMError("logging.wandb: wandb is not installed (pip install -e \".[wandb]\")")


@dataclass(frozen=True)
class TrainConfig:
    out: str = field(default="out/train", **_help("run directory: checkpoints, adapter, logs"))
    seed: int = field(default=42, **_help("seed of every random choice", range=(0, 2**32 - 1)))
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self):
        _nonempty("out", self.out)
        check_ranges(self)
        kind = self.regularizer.kind
        if kind == "ewc" and self.lora.enabled:
            raise E2WMError("regularizer.kind: ewc is full fine-tuning; set lora.enabled: false")
        if kind in ("ewc_lora", "kl") and not self.lora.enabled:
            raise E2WMError(f"regularizer.kind: {kind} needs LoRA; set lora.enabled: true")
        if kind in ("ewc_lora", "ewc") and not self.regularizer.fisher:
            raise E2WMError(f"regularizer.fisher: {kind} needs a Fisher (run `e2wm fisher` first)")

    def to_dict(self) -> dict:
        return to_plain(self)

    def trajectory_hash(self) -> str:
        """What fixes the loss curve: a resume with another value of these is refused. The world
        size, micro-batch, ZeRO stage and gradient checkpointing may change, as may logging."""
        d = self.to_dict()
        for key in ("out", "checkpoint", "logging", "deepspeed"):
            d.pop(key)
        d["optim"].pop("micro_batch_size")
        d["model"].pop("gradient_checkpointing")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def load_train_config(path: str | None, sets: list[str] | None = None) -> TrainConfig:
    from e2wm.config import apply_sets
    data, where = read_yaml(path, "train.yaml")
    if sets:
        where += " (with --set)"
    return build(TrainConfig, apply_sets(data, sets), where)


def gradient_accumulation(cfg: TrainConfig, world: int) -> int:
    """Micro-batches per rank per step: the fewest with world × micro × accumulation >= the global batch.

    Any world size works: the global batch is dealt over those slots (`data.deal`), an empty slot runs
    a zero-weight filler row, and the loss is normalised over the whole global batch's answer tokens,
    so the update does not depend on how the rows were split."""
    o = cfg.optim
    return -(-o.global_batch_size // (world * o.micro_batch_size))


def validate(cfg: TrainConfig, world: int, resume: str | None = None, force: bool = False) -> None:
    """Checks that need the world size or the file system (cheap; before any model, process group or
    output folder exists)."""
    from e2wm.files import output_dir
    from e2wm.train.ds_config import deepspeed_config
    from e2wm.train.export import RUN_INFO
    from e2wm.train.model import check_model_spec

    check_model_spec(cfg.model.name_or_path)
    # a run's folder holds run.json from its first step on; a user's folder (even with a config.yaml,
    # which a run would overwrite) is refused without --force
    how = resume or cfg.checkpoint.resume
    reads = {"model.name_or_path": cfg.model.name_or_path, "data.path": cfg.data.path,
             "deepspeed.config": cfg.deepspeed.config,
             "regularizer.fisher": cfg.regularizer.fisher if cfg.regularizer.kind in ("ewc_lora", "ewc") else None,
             "regularizer.corpus": cfg.regularizer.corpus if cfg.regularizer.kind == "kl" else None}
    if how not in ("auto", "never") and not Path(how).resolve().is_relative_to(Path(cfg.out).resolve()):
        reads["--resume" if resume else "checkpoint.resume"] = how   # a step of this run's own folder is fine
    output_dir(cfg.out, "out", ours=(RUN_INFO,), force=force, inputs=reads)
    if not Path(cfg.data.path).exists():
        raise E2WMError(f"data.path: {cfg.data.path}: no such file or directory")
    if cfg.regularizer.kind in ("ewc_lora", "ewc"):
        from e2wm.train.fisher_io import check_fisher
        check_fisher(cfg.regularizer.fisher)
    if cfg.regularizer.kind == "ewc":   # full fine-tuning trains every weight: a weight F misses is unpenalised
        from e2wm.train.fisher_io import fisher_path, open_fisher
        with open_fisher(cfg.regularizer.fisher) as fh:
            modules = (fh.metadata() or {}).get("modules", "unrecorded")
        if modules != "all":
            raise E2WMError(f"regularizer.fisher: {fisher_path(cfg.regularizer.fisher)} covers {modules} weights, "
                            f"but kind ewc trains every weight; compute it with `e2wm fisher --modules all`")
    if cfg.regularizer.kind == "kl":
        from e2wm.train.corpus import check_corpus
        check_corpus(cfg.regularizer.corpus, "regularizer.corpus")
    if how not in ("auto", "never"):
        from e2wm.train.checkpoint import read_state
        read_state(how, "--resume" if resume else "checkpoint.resume")
    deepspeed_config(cfg, world)
