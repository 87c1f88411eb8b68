"""The pipeline's own small base model: a BPE tokenizer trained with `tokenizers` on the built data and
the general corpus, a Llama made from a config, and (optionally) a first training on general text, so
that fine-tuning has general knowledge to keep (Table 2's question) rather than random weights."""
from __future__ import annotations

import math
import random
import time
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


def pretrain(model, tok, docs: list[str], steps: int, lr: float, batch: int, length: int, seed: int, log) -> float:
    """`steps` AdamW steps of next-token prediction on `length`-token windows of `docs`; the last loss."""
    from e2wm.train.dist import device
    dev = device()
    ids = [t for d in docs for t in tok(d)["input_ids"] + [tok.eos_token_id]]
    windows = [ids[i:i + length] for i in range(0, len(ids) - length, length)]
    if not windows:
        raise E2WMError(f"model.pretrain_length {length}: the general corpus holds {len(ids)} tokens, not more "
                        f"than one pretraining window; lower it or use a larger corpus")
    rng = random.Random(seed)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    order, loss_v, t0 = [], float("nan"), time.perf_counter()
    for step in range(steps):
        if len(order) < batch:
            order += rng.sample(range(len(windows)), len(windows))
        pick, order = order[:batch], order[batch:]
        x = torch.tensor([windows[i] for i in pick], dtype=torch.long, device=dev)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_v = loss.item()
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            log(f"  pretrain step {step + 1}/{steps}: loss {loss_v:.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return loss_v


def make_local_model(cfg, texts: list[str], general: list[str], out: Path, log=print) -> dict:
    """Tokenizer + model from `cfg` (a ModelStage) saved to `out` (`atomic_dir`)."""
    from transformers.utils import logging as hf_logging

    from e2wm.train.model import tiny_causal_lm
    hf_logging.disable_progress_bar()
    tok = train_tokenizer(texts + general, cfg.vocab_size)
    with torch.random.fork_rng(devices=[]):   # HF draws initial weights from the global RNG: seed it only here
        model = tiny_causal_lm(cfg.seed, len(tok), cfg.hidden, cfg.layers, cfg.heads)
    n = sum(p.numel() for p in model.parameters())
    log(f"  tokenizer: {len(tok)} BPE tokens; model: Llama, hidden {cfg.hidden}, {cfg.layers} layers, "
        f"{n / 1e6:.2f}M parameters")
    info = {"vocab": len(tok), "parameters": n}
    if cfg.pretrain_steps:
        info["pretrain_loss"] = pretrain(model, tok, general, cfg.pretrain_steps, cfg.pretrain_lr,
                                         cfg.pretrain_batch, cfg.pretrain_length, cfg.seed, log)
    with atomic_dir(out) as tmp:
        model.cpu().save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    return info
