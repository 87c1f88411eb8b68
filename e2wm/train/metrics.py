"""Rank-0 observability: progress bar, log lines, `metrics.jsonl`, TensorBoard, W&B; FLOPs and MFU.

MFU = tokens/s × FLOPs per token / (world × peak FLOP/s). FLOPs per token follow PaLM (appendix B):
6·N for full fine-tuning (forward, input gradients, weight gradients), 4·N with LoRA (frozen weights
need no weight gradient; the adapters' own FLOPs are negligible), plus 12·L·H·T for attention, where
N counts the non-embedding parameters, L layers, H hidden size, T the mean sequence length.
Recomputation under gradient checkpointing is not counted: MFU counts the model's FLOPs, not the GPU's.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from e2wm.files import dumps, read_jsonl, write_atomic

PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "4090": 165.0,
               "3090": 71.0}   # dense bf16, per device


def flops_per_token(model_config, n_params: int, n_embedding: int, seq_len: float, full_ft: bool) -> float:
    layers, hidden = model_config.num_hidden_layers, model_config.hidden_size
    return (6 if full_ft else 4) * (n_params - n_embedding) + 12 * layers * hidden * seq_len


def peak_flops(configured_tflops: float) -> float | None:
    """Per-device peak FLOP/s: the configured value, or a known GPU's dense bf16 figure."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


def count_params(model) -> tuple[int, int]:
    """(all parameters, embedding parameters) counting ZeRO-3 partitioned ones at full size."""
    total = emb = 0
    for name, p in model.named_parameters():
        n = p.ds_numel if hasattr(p, "ds_numel") else p.numel()
        total += n
        if "embed" in name or "wte" in name or "wpe" in name:
            emb += n
    return total, emb


class Logger:
    """Writes on rank 0 only; other ranks get a Logger whose methods do nothing."""

    def __init__(self, run_dir, cfg, total_steps: int, start_step: int, rank: int):
        self.active = rank == 0
        self.every, self.total, self.t0, self.start = cfg.logging.every, total_steps, time.time(), start_step
        self.tb = self.wandb = self.bar = None
        if not self.active:
            return
        run_dir = Path(run_dir)
        self.jsonl = run_dir / "metrics.jsonl"
        if self.jsonl.exists():   # a resumed run rewrites what came after its checkpoint
            keep = [line for i, row in read_jsonl(self.jsonl, "metrics log")
                    if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= start_step
                    for line in [dumps(row)]]
            write_atomic(self.jsonl, "".join(line + "\n" for line in keep))   # a crash leaves the old log
        if cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
        if cfg.logging.wandb:
            import wandb
            self.wandb = wandb.init(project=cfg.logging.wandb_project, config=cfg.to_dict(),
                                    dir=str(run_dir), resume="allow", id=run_dir.name)
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, info="")

    def print(self, text: str) -> None:
        if self.active and self.bar:
            self.bar.console.print(text)
        elif self.active:
            print(text, flush=True)

    def step(self, row: dict) -> None:
        if not self.active:
            return
        with self.jsonl.open("a") as fh:
            fh.write(dumps(row) + "\n")   # a diverged loss is null, never NaN (not JSON)
        step = row["step"]
        if self.tb:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k.replace("loss_", "loss/"), v, step)
        if self.wandb:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)
        info = f"loss {row['loss']:.4f}  {row['tokens_per_s']:,.0f} tok/s"
        if self.bar:
            self.bar.update(self.task, completed=step, info=info)
        if step % self.every == 0 or step == self.total:
            done = step - self.start
            eta = (time.time() - self.t0) / max(done, 1) * (self.total - step)
            extra = "".join(f"  {k} {row[k]:.4g}" for k in ("penalty", "penalty_to_ce", "grad_norm", "mfu") if row.get(k) is not None)
            self.print(f"step {step}/{self.total}  epoch {row['epoch']}  {info}  lr {row['lr']:.3g}{extra}  "
                       f"eta {eta:,.0f}s")

    def close(self) -> None:
        if not self.active:
            return
        if self.bar:
            self.bar.stop()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
