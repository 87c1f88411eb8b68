"""The smallest training job the CLI tests start from: a few question/answer rows and a one-step
plain-LoRA config of the tiny model. Tests change what they test from here."""
from __future__ import annotations

import json
from pathlib import Path

ROWS = [{"task": "t", "input": f"question {i}?", "ref": f"answer {i}"} for i in range(8)]


def write_rows(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_train_config(out, model, data, **sections) -> dict:
    """A one-step fp32 run (4 rows a step in micro-batches of 2), no regulariser, no checkpoints, no
    TensorBoard; `sections` replace or update (dicts) its top-level keys."""
    cfg = {"out": str(out), "model": {"name_or_path": str(model)},
           "data": {"path": str(data), "max_length": 64}, "regularizer": {"kind": "none"},
           "optim": {"precision": "fp32", "max_steps": 1, "global_batch_size": 4, "micro_batch_size": 2},
           "checkpoint": {"every": 0}, "logging": {"tensorboard": False}}
    for k, v in sections.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg
