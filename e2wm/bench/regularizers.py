"""`e2wm bench ewc` and `e2wm bench fisher`: training-side costs as ratios measured in one process.

* ewc:    median LoRA step time (forward + backward + AdamW) with the ewc_lora penalty (random Fisher)
          over the same step without it; same model, same batches.
* fisher: Fisher tokens/s (`e2wm.train.fisher.compute_fisher`, one backward per sample) over plain
          LoRA forward+backward tokens/s; same model, sequence length and micro-batch.
"""
from __future__ import annotations

import statistics
import time

import torch

from e2wm.train.model import add_lora, lora_pairs, tiny_causal_lm
from e2wm.train.regularizers import make_regularizer


def _model(hidden: int, layers: int, heads: int, vocab: int, seed: int = 0):
    model = add_lora(tiny_causal_lm(seed=seed, vocab=vocab, hidden=hidden, layers=layers, heads=heads))
    with torch.no_grad():   # B != 0, so the penalty is not trivially zero
        for _, _, B, _ in lora_pairs(model):
            B.normal_(0, 0.01)
    return model


def _step_times(model, batches, reg=None) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for ids in batches:
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        if reg is not None:
            loss = loss + reg()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times


def run_ewc(steps: int = 30, hidden: int = 256, layers: int = 4, heads: int = 4, vocab: int = 512,
            seq: int = 128, batch: int = 4, warmup: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randint(3, vocab, (batch, seq), generator=g) for _ in range(steps + warmup)]
    plain_model = _model(hidden, layers, heads, vocab, seed)
    ewc_model = _model(hidden, layers, heads, vocab, seed)
    fisher = {n: torch.rand(B.shape[0], A.shape[1], generator=g) for n, A, B, _ in lora_pairs(ewc_model)}
    reg = make_regularizer("ewc_lora", ewc_model, fisher=fisher, lam=1.0)
    plain, ewc = [], []
    for i in range(0, len(batches), 5):   # interleave so drift in machine load hits both alike
        plain += _step_times(plain_model, batches[i:i + 5])
        ewc += _step_times(ewc_model, batches[i:i + 5], reg)
    p_ms, e_ms = statistics.median(plain[warmup:]) * 1e3, statistics.median(ewc[warmup:]) * 1e3
    return {"bench": "ewc", "ratio": e_ms / p_ms, "ewc_step_ms": e_ms, "plain_step_ms": p_ms,
            "steps": steps, "hidden": hidden, "layers": layers, "seq": seq, "batch": batch,
            "lora_layers": len(fisher), "threads": torch.get_num_threads()}


def run_fisher(samples: int = 32, hidden: int = 256, layers: int = 4, heads: int = 4,
               seq: int = 128, micro_batch: int = 4, seed: int = 0) -> dict:
    from e2wm.train.fisher import compute_fisher
    from e2wm.train.model import byte_tokenizer

    rng = torch.Generator().manual_seed(seed)
    codes = torch.randint(32, 127, (samples, seq), generator=rng)   # printable ASCII: 1 byte = 1 token
    texts = ["".join(map(chr, row.tolist())) for row in codes]
    tok = byte_tokenizer()
    model = _model(hidden, layers, heads, len(tok), seed)
    # plain LoRA forward+backward, same model, lengths and micro-batch; tokens counted as Fisher counts them
    ids = torch.tensor(tok(texts)["input_ids"])
    compute_fisher(model, texts[:micro_batch], tok, max_length=seq, micro_batch=micro_batch)   # warm-up
    t, tokens = time.perf_counter(), 0
    for i in range(0, samples, micro_batch):
        b = ids[i:i + micro_batch]
        model(input_ids=b, labels=b).loss.backward()
        tokens += b.shape[0] * (seq - 1)
    plain_s = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    _, meta = compute_fisher(model, texts, tok, max_length=seq, micro_batch=micro_batch)
    fisher_s = time.perf_counter() - t
    f_tps, p_tps = int(meta["tokens"]) / fisher_s, tokens / plain_s
    return {"bench": "fisher", "ratio": f_tps / p_tps, "fisher_tokens_per_s": f_tps,
            "plain_tokens_per_s": p_tps, "samples": samples, "seq": seq, "micro_batch": micro_batch,
            "hidden": hidden, "layers": layers, "fisher_modules": "lora-targets",
            "threads": torch.get_num_threads()}
