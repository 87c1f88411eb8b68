"""`e2wm bench train`: the trainer's tokens/s against a plain transformers + peft loop and against
E2WM's batching (every row padded to 800 tokens), on the same model, rows, LoRA and batch sizes. The
trainer runs twice: with E2WM's uniformly shuffled global batches (`data.sampling: shuffle`) and with
length-grouped ones (`length_grouped`: less padding, but another weighting of the tasks' tokens).

Rows have E2WM's length mix (its four released training files: share, mean and max tokens per task,
../shared/notes/e2wm-paper.md §2) as random ASCII text, one token per byte with the byte tokenizer.
Every contender does the same optimizer steps: `global_batch` rows per step in micro-batches of
`micro_batch`, AdamW, clipping at 1.0. The plain loop takes rows in shuffled order and pads each
micro-batch to its longest row, as a hand-written peft loop would. Tokens/s counts real tokens only
and leaves out the first `warmup` steps.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# task: (rows in E2WM's training set, mean tokens, max tokens, mean answer tokens)
E2WM_MIX = {"plan_generation": (1659, 253, 633, 40), "activity_recognition": (1659, 151, 263, 4),
            "counting": (1000, 578, 826, 14), "object_path": (1000, 420, 498, 6)}


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    tasks = list(E2WM_MIX)
    share = np.array([E2WM_MIX[t][0] for t in tasks], dtype=float)
    rows = []
    for t in rng.choice(len(tasks), size=n, p=share / share.sum()):
        _, mean, top, answer = E2WM_MIX[tasks[t]]
        total = int(np.clip(rng.normal(mean, mean / 4), answer + 8, top))
        text = "".join(map(chr, rng.integers(97, 123, size=total - 2)))   # minus the " " and "\n" joints
        cut = total - 2 - answer
        rows.append({"task": tasks[t], "input": text[:cut], "ref": text[cut:], "weight": 1.0})
    return rows


def bench_model_dir(root: Path, hidden: int = 256, layers: int = 4) -> str:
    """A Llama of the given size with the byte tokenizer, saved like a hub model."""
    from e2wm.train.model import byte_tokenizer, tiny_causal_lm

    tiny_causal_lm(hidden=hidden, layers=layers, heads=4).save_pretrained(str(root / "model"))
    byte_tokenizer().save_pretrained(str(root / "model"))
    return str(root / "model")


def _trainer(model: str, data: Path, out: Path, sampling: str, steps: int, global_batch: int, micro: int,
             precision: str, stage: int, warmup: int) -> dict:
    from e2wm.config import build
    from e2wm.train.config import TrainConfig
    from e2wm.train.recipe import Recipe

    cfg = build(TrainConfig, {
        "out": str(out), "model": {"name_or_path": model},
        "lora": {"dropout": 0.1}, "data": {"path": str(data), "sampling": sampling},
        "optim": {"max_steps": warmup + steps, "global_batch_size": global_batch, "micro_batch_size": micro,
                  "precision": precision},
        "regularizer": {"kind": "none"}, "deepspeed": {"config": "zero3" if stage == 3 else "zero2",
                                                       "zero_stage": stage},
        "checkpoint": {"every": 0, "resume": "never"}, "logging": {"tensorboard": False, "every": 10**6}})
    recipe = Recipe(cfg)
    recipe.setup()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][warmup:]
    tokens, seconds = sum(r["tokens"] for r in rows), sum(r["tokens"] / r["tokens_per_s"] for r in rows)
    mfu = [r["mfu"] for r in rows if r.get("mfu") is not None]
    return {"tokens_per_s": tokens / seconds, "mfu": sum(mfu) / len(mfu) if mfu else None,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def _plain(model_spec: str, rows: list[dict], steps: int, global_batch: int, micro: int, precision: str,
           warmup: int, pad_to: int | None) -> float:
    """Tokens/s of a hand-written transformers + peft loop (rows shuffled, labels -100 on prompt and pads)."""
    from e2wm.train.data import encode_rows
    from e2wm.train.dist import device as accel_device
    from e2wm.train.model import add_lora, load_model, load_tokenizer
    from e2wm.train.model import DTYPES

    dev = accel_device()
    tok = load_tokenizer(model_spec)
    examples, _, _ = encode_rows(rows, tok, 800)
    model = add_lora(load_model(model_spec, DTYPES[precision]), 8, 32, None, 0.1, 0).to(dev)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=8e-4)
    order = np.random.default_rng(1).permutation(len(examples))
    tokens, t0 = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            tokens, t0 = 0, time.perf_counter()
        picked = [examples[i] for i in order[(step * global_batch) % len(order):][:global_batch]]
        for k in range(0, len(picked), micro):
            part = picked[k:k + micro]
            width = pad_to or max(len(e.ids) for e in part)
            ids = torch.full((len(part), width), tok.pad_token_id, dtype=torch.long)
            mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
            for i, e in enumerate(part):
                ids[i, :len(e.ids)] = torch.tensor(e.ids)
                mask[i, :len(e.ids)] = 1
                labels[i, e.answer_start:len(e.ids)] = ids[i, e.answer_start:len(e.ids)]
            out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels.to(dev))
            (out.loss * len(part) / len(picked)).backward()
            tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t0)


def run(model: str | None = None, rows: int = 240, steps: int = 6, global_batch: int = 16, micro_batch: int = 4,
        precision: str = "fp32", zero_stage: int = 2, warmup: int = 2, seed: int = 0, pad800: bool = True) -> dict:
    from e2wm.train.config import SAMPLINGS
    from e2wm.train.data import encode_rows
    from e2wm.train.model import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = model or bench_model_dir(root)
        data = synthetic_rows(rows, seed)
        (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        lengths = [len(e.ids) for e in encode_rows(data, load_tokenizer(spec), 800)[0]]
        trainer = {sampling: _trainer(spec, root / "rows.jsonl", root / sampling, sampling, steps, global_batch,
                                      micro_batch, precision, zero_stage, warmup)
                   for sampling in SAMPLINGS}
        plain = _plain(spec, data, steps, global_batch, micro_batch, precision, warmup, None)
        pad = _plain(spec, data, steps, global_batch, micro_batch, precision, warmup, 800) if pad800 else None
    for t in trainer.values():
        t["ratio_plain"] = t["tokens_per_s"] / plain
        t["ratio_pad800"] = t["tokens_per_s"] / pad if pad else None
    return {"bench": "train", **trainer, "plain_tokens_per_s": plain, "pad800_tokens_per_s": pad,
            "model": model or "llama h256 l4", "precision": precision, "zero_stage": zero_stage,
            "global_batch": global_batch, "micro_batch": micro_batch, "steps": steps,
            "mean_tokens": sum(lengths) / len(lengths), "threads": torch.get_num_threads()}


def main(args) -> int:
    from e2wm.bench import report
    from e2wm.train.config import SAMPLINGS
    from e2wm.train.model import check_model_spec
    if args.model is not None:
        check_model_spec(args.model, "--model")
    r = run(args.model, args.rows, args.steps, args.global_batch, args.micro_batch, args.precision,
            args.zero_stage, pad800=not args.no_pad800)
    pad = f", E2WM pad-to-800 {r['pad800_tokens_per_s']:,.0f} tokens/s" if r["pad800_tokens_per_s"] else ""
    return report(r, f"plain transformers+peft {r['plain_tokens_per_s']:,.0f} tokens/s{pad}",
                  *(f"trainer ({s:<14}) {r[s]['tokens_per_s']:,.0f} tokens/s: ratio {r[s]['ratio_plain']:.2f} vs plain"
                    + (f", {r[s]['ratio_pad800']:.2f} vs pad-to-800" if r[s]["ratio_pad800"] else "")
                    for s in SAMPLINGS))
