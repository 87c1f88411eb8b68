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

from e2wm.config import build, read_yaml, to_plain
from e2wm.errors import E2WMError

def _help(text: str, **kw) -> dict:
    return {"metadata": {"help": text}, **kw}


def _positive(section: str, obj, *names: str, low: float = 1) -> None:
    for n in names:
        v = getattr(obj, n)
        if v < low:
            raise E2WMError(f"{section}.{n}: must be >= {low}, got {v!r}")


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = field(default="tiny", **_help("`tiny`, `shape:gpt-neo-1.3b|gpt-j-6b|llama-13b`, a local "
                                                        "directory or a hub id"))
    gradient_checkpointing: bool = field(default=False, **_help("recompute activations in backward"))
    trust_remote_code: bool = False


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = field(default=True, **_help("false: full fine-tuning (the `ewc` column of Table 2)"))
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: tuple[str, ...] = field(default=(), **_help("empty: the architecture's default"))

    def __post_init__(self):
        _positive("lora", self, "r", "alpha")
        if not 0 <= self.dropout < 1:
            raise E2WMError(f"lora.dropout: must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class DataConfig:
    path: str = field(default="out/data", **_help("an `e2wm build-data` output, its hf/ DatasetDict, a JSONL "
                                                   "file or a directory of JSONL files"))
    max_length: int = field(default=800, **_help("tokens per row; longer rows lose the start of the prompt"))
    task_weights: dict[str, float] = field(default_factory=dict, **_help("override a task's loss weight"))
    group_batches: int = field(default=16, **_help("global batches per length-sorted group"))
    pad_to_multiple_of: int = 8

    def __post_init__(self):
        _positive("data", self, "group_batches", "pad_to_multiple_of")
        _positive("data", self, "max_length", low=2)
        for task, w in self.task_weights.items():
            if w < 0:
                raise E2WMError(f"data.task_weights.{task}: must be >= 0, got {w!r}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 8e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = 0
    epochs: int = 3
    max_steps: int = field(default=0, **_help("> 0: stop after this many steps (and schedule over them)"))
    global_batch_size: int = field(default=20, **_help("rows per optimizer step, whatever the world size"))
    micro_batch_size: int = field(default=4, **_help("rows per forward on one rank"))
    grad_clip: float = field(default=1.0, **_help("0: no clipping"))
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"

    def __post_init__(self):
        _positive("optim", self, "epochs", "global_batch_size", "micro_batch_size")
        _positive("optim", self, "warmup_steps", "max_steps", "grad_clip", "weight_decay", low=0)
        if not self.lr > 0:
            raise E2WMError(f"optim.lr: must be > 0, got {self.lr!r}")


@dataclass(frozen=True)
class RegularizerConfig:
    kind: Literal["none", "ewc_lora", "ewc", "kl"] = "ewc_lora"
    lam: float = field(default=2.0, **_help("λ, the weight of the penalty"))
    fisher: str = field(default="", **_help("an `e2wm fisher` output (ewc_lora, ewc)"))
    corpus: str = field(default="builtin:pydoc", **_help("general text for `kl` (as `e2wm fisher --corpus`)"))
    kl_batch_size: int = field(default=4, **_help("general-text rows per step for `kl`, over all ranks"))
    kl_max_length: int = 256

    def __post_init__(self):
        _positive("regularizer", self, "lam", low=0)
        _positive("regularizer", self, "kl_batch_size", "kl_max_length")


@dataclass(frozen=True)
class DeepSpeedConfig:
    config: str = field(default="zero2", **_help("zero2 | zero3 | zero3_offload (ds_configs/) or a JSON path"))
    zero_stage: int | None = field(default=None, **_help("override the JSON's zero_optimization.stage"))

    def __post_init__(self):
        if self.zero_stage is not None and self.zero_stage not in (0, 1, 2, 3):
            raise E2WMError(f"deepspeed.zero_stage: must be 0, 1, 2 or 3, got {self.zero_stage!r}")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = field(default=100, **_help("steps between checkpoints (0: only at the end)"))
    keep_last: int = 2
    resume: str = field(default="auto", **_help("auto (the latest under out/checkpoints), never, or a step dir"))
    kill_at_step: int = field(default=0, **_help("fault injection: SIGKILL every rank after this step"))

    def __post_init__(self):
        _positive("checkpoint", self, "every", "kill_at_step", low=0)
        _positive("checkpoint", self, "keep_last")


@dataclass(frozen=True)
class LoggingConfig:
    every: int = field(default=10, **_help("steps between log lines"))
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "e2wm"
    peak_tflops: float = field(default=0.0, **_help("per-device peak for MFU; 0: known GPUs only"))

    def __post_init__(self):
        _positive("logging", self, "every")
        if self.wandb and importlib.util.find_spec("wandb") is None:
            raise E2WMError("logging.wandb: wandb is not installed (pip install -e \".[wandb]\")")


@dataclass(frozen=True)
class TrainConfig:
    out: str = field(default="out/train", **_help("run directory: checkpoints, adapter, logs"))
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self):
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
    """Micro-batches per rank per step, so that world × micro × accumulation = the global batch."""
    o = cfg.optim
    per_step = world * o.micro_batch_size
    if o.global_batch_size % per_step:
        raise E2WMError(f"optim.global_batch_size: {o.global_batch_size} is not a multiple of "
                        f"world size {world} × optim.micro_batch_size {o.micro_batch_size}")
    return o.global_batch_size // per_step


def validate(cfg: TrainConfig, world: int) -> None:
    """Checks that need the world size or the file system (cheap; before any heavy work)."""
    from e2wm.train.ds_config import deepspeed_config
    from e2wm.train.model import check_model_spec

    gradient_accumulation(cfg, world)
    check_model_spec(cfg.model.name_or_path)
    if not Path(cfg.data.path).exists():
        raise E2WMError(f"data.path: {cfg.data.path}: no such file or directory")
    if cfg.regularizer.kind in ("ewc_lora", "ewc"):
        f = Path(cfg.regularizer.fisher)
        if not (f.is_file() or (f / "fisher.safetensors").is_file()):
            raise E2WMError(f"regularizer.fisher: {cfg.regularizer.fisher}: no fisher.safetensors there")
    if cfg.regularizer.kind == "kl":
        from e2wm.train.corpus import check_corpus
        check_corpus(cfg.regularizer.corpus, "regularizer.corpus")
    deepspeed_config(cfg, world)
