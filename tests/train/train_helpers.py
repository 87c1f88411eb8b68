"""Helpers for the training tests (and their rank workers, which import this module as a script's
neighbour): reading a run's metrics, writing configs, the seeded penalty case. Launching ranks: run_helpers."""
import json
from pathlib import Path

import torch
import yaml

from e2wm.train.model import add_lora, lora_pairs, tiny_causal_lm

ROOT = Path(__file__).resolve().parents[2]

# LoRA on q/v alone barely moves a random tiny model; with lm_head as well the loss falls within a few steps
TARGETS = ["q_proj", "v_proj", "lm_head"]


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def with_(cfg: dict, **sections) -> dict:
    """A copy of `cfg` with some sections' keys replaced (`out=...` for top-level keys)."""
    out = json.loads(json.dumps(cfg))
    for key, value in sections.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


PROBE = [[5, 17, 42, 99, 3, 250, 7, 64, 128, 31]]
ZERO3_JOBS = {   # name: (ZeRO stage, config changes); 4 steps each on 2 ranks, in one torchrun launch
    "none_bf16": (3, {"regularizer": {"kind": "none"}, "optim": {"precision": "bf16"}}),
    "kl_z3": (3, {"regularizer": {"kind": "kl", "kl_batch_size": 3, "kl_max_length": 64}}),
    "kl_z2": (2, {"regularizer": {"kind": "kl", "kl_batch_size": 3, "kl_max_length": 64}}),
    "ewc_z3": (3, {"lora": {"enabled": False}, "regularizer": {"kind": "ewc"}, "optim": {"lr": 1e-3}}),
    "ewc_z2": (2, {"lora": {"enabled": False}, "regularizer": {"kind": "ewc"}, "optim": {"lr": 1e-3}}),
    "gc": (3, {"model": {"gradient_checkpointing": True}}),
    "ewc_lora": (3, {}),
}


def make_case(b_scale: float = 0.05):
    """The tiny LoRA model with a non-zero B, a random positive Fisher and one batch; fully seeded."""
    model = add_lora(tiny_causal_lm(seed=0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, _, B, _ in lora_pairs(model):
            B.copy_(torch.randn(B.shape, generator=g) * b_scale)
    named = dict(model.named_parameters())
    fisher = {name: torch.rand(named["base_model.model." + name.replace(".weight", ".base_layer.weight")].shape,
                               generator=g) for name, *_ in lora_pairs(model)}
    ids = torch.randint(3, 128, (2, 16), generator=g)
    return model, fisher, ids
