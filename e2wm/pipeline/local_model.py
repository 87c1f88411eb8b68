"""The pipeline's own small base model: a BPE tokenizer trained with `tokenizers` on the built data and
the general corpus, a Llama made from a config, and (optionally) a first training on general text by `e2wm
train`, so that fine-tuning has general knowledge to keep (Table 2's question) rather than random weights."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from e2wm.errors import E2WMError
from e2wm.files import atomic_dir, read_jsonl


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (<pad> <s> </s> first) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def task_texts(data_dir: Path) -> list[str]:
    """The training rows' text (input and answer) of an `e2wm build-data` output."""
    return [f"{row['input']} {row['ref']}" for f in sorted((data_dir / "train").glob("*.jsonl"))
            for _, row in read_jsonl(f, "training rows")]


def windows(tok, docs: list[str], length: int) -> list[dict]:
    """`length`-token windows of the documents (each ended by EOS) as rows with an empty prompt, all answer: the
    row's " " stands for a window's leading space; `truncation: end` cuts the "\\n" and what follows."""
    text = "".join(d + tok.eos_token for d in docs)
    at = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    chunks = [text[at[i][0]:at[min(i + length + 8, len(at) - 1)][1]] for i in range(0, len(at) - length, length)]
    if not chunks:
        raise E2WMError(f"model.pretrain_length {length}: the general corpus holds {len(at)} tokens, not more "
                        f"than one pretraining window; lower it or use a larger corpus")
    return [{"input": "", "ref": c[1:] if c.startswith(" ") else c} for c in chunks]


def pretrain(cfg, tok, base: Path, docs: list[str], scratch: Path) -> tuple[Path, float]:
    """`e2wm train` of the model in `base` on windows of `docs`: (the trained model's folder, its last loss)."""
    from e2wm.config import build
    from e2wm.train import recipe
    from e2wm.train.config import TrainConfig

    rows, steps = windows(tok, docs, cfg.pretrain_length), cfg.pretrain_steps
    (scratch / "windows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = recipe.run(build(TrainConfig, {
        "out": str(scratch / "train"), "seed": cfg.seed, "model": {"name_or_path": str(base)},
        "lora": {"enabled": False}, "regularizer": {"kind": "none"}, "data": {"path": str(scratch / "windows.jsonl"),
                 "max_length": cfg.pretrain_length, "truncation": "end", "pad_to_multiple_of": 1},
        "optim": {"lr": cfg.pretrain_lr, "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": steps // 20,
                  "max_steps": steps, "global_batch_size": cfg.pretrain_batch, "micro_batch_size": cfg.pretrain_batch,
                  "grad_clip": 1.0, "precision": "fp32"},
        "checkpoint": {"every": 0, "keep_last": 1, "resume": "never"},   # only the final one, for the export
        "logging": {"every": max(1, steps // 10), "tensorboard": False}}, "model: pretraining"))
    return model, json.loads((scratch / "train" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]


def make_local_model(cfg, texts: list[str], general: list[str], out: Path, log=print) -> dict:
    """Tokenizer + model from `cfg` (a ModelStage), pretrained if it says so, saved to `out` (`atomic_dir`)."""
    from transformers.utils import logging as hf_logging

    from e2wm.train.export import MARKER
    from e2wm.train.model import tiny_causal_lm
    hf_logging.disable_progress_bar()   # saving a model has a bar
    tok = train_tokenizer(texts + general, cfg.vocab_size)
    # the global RNG (HF's initial weights, the trainer's dropout seeds) is seeded only here; the scratch always goes
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as s:
        model = tiny_causal_lm(cfg.seed, len(tok), cfg.hidden, cfg.layers, cfg.heads)
        n = sum(p.numel() for p in model.parameters())
        log(f"  tokenizer: {len(tok)} BPE tokens; Llama: hidden {cfg.hidden}, {cfg.layers} layers, {n / 1e6:.2f}M")
        info, made = {"vocab": len(tok), "parameters": n}, Path(s) / "base"
        model.save_pretrained(str(made))
        tok.save_pretrained(str(made))
        if cfg.pretrain_steps:
            made, info["pretrain_loss"] = pretrain(cfg, tok, made, general, Path(s))
        with atomic_dir(out) as tmp:   # not the export's note of its source, the scratch folder
            shutil.copytree(made, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
    return info
