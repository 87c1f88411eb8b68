"""`e2wm bench ewc` and `e2wm bench fisher`: training-side costs as ratios measured in one process.

* ewc:    median LoRA step time (forward + backward + AdamW) with the ewc_lora penalty (random Fisher)
          over the same step without it; same model, same batches.
* fisher: Fisher tokens/s (`e2wm.train.fisher.compute_fisher`) by method (batch: one backward per
          micro-batch, the default; loop: one backward per sample) over plain LoRA forward+backward
          tokens/s, with each one's peak memory; same model, sequence length and micro-batch (8). The
          model is what `e2wm fisher --precision P` runs: the base in P, a zero-init LoRA added by
          `fisher_run.lora_model`, and the Fisher runs in the dtype of its weights (recorded, and reported).
"""
from __future__ import annotations

import os
import statistics
import time

import torch

from e2wm.bench import report
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


def _peak_mib(fn) -> tuple[float, float]:
    """(seconds, peak memory in MiB above the start) of `fn()`: the accelerator's allocator peak on a
    GPU; on CPU the process's resident set, sampled every millisecond."""
    import threading

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t, (torch.cuda.max_memory_allocated() - base) / 2**20

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:   # hand freed heap back to the OS first, so that what fn allocates shows in the resident set
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t
    done.set()
    th.join()
    return elapsed, max(peak[0] - base, 0) / 2**20


def run_fisher(samples: int = 64, hidden: int = 256, layers: int = 4, heads: int = 4,
               seq: int = 128, micro_batch: int = 8, seed: int = 0, repeats: int = 2,
               model_spec: str | None = None, precision: str = "fp32", gradient_checkpointing: bool = False) -> dict:
    """Fisher tokens/s by method (batch: the default; loop: one backward per sample) over plain LoRA
    forward+backward tokens/s, same model, lengths and micro-batch, on the accelerator's device; the
    best of `repeats` rounds, contenders interleaved. `model_spec` (e.g. shape:gpt-neo-1.3b) replaces
    the default Llama (hidden 256, 4 layers, byte tokens)."""
    from e2wm.train.dist import device as accel_device
    from e2wm.train.fisher import compute_fisher
    from e2wm.train.fisher_run import lora_model
    from e2wm.train.model import DTYPES, byte_tokenizer, load_model, load_tokenizer

    dtype = DTYPES[precision]
    dev = accel_device()
    rng = torch.Generator().manual_seed(seed)
    codes = torch.randint(32, 127, (samples, seq), generator=rng)   # printable ASCII: 1 byte = 1 token
    texts = ["".join(map(chr, row.tolist())) for row in codes]
    if model_spec is None:
        tok = byte_tokenizer()
        base = tiny_causal_lm(seed=seed, vocab=len(tok), hidden=hidden, layers=layers, heads=heads).to(dtype)
    else:
        tok = load_tokenizer(model_spec, field="--model")
        base = load_model(model_spec, dtype, field="--model")
    model = lora_model(base).to(dev).eval()   # as `e2wm fisher` builds it (one process)
    ids = torch.tensor(tok(texts, truncation=True, max_length=seq)["input_ids"], device=dev)
    tokens = samples * (ids.shape[1] - 1)   # counted as the Fisher counts them

    def plain():
        for i in range(0, samples, micro_batch):
            b = ids[i:i + micro_batch]
            model(input_ids=b, labels=b).loss.backward()
        model.zero_grad(set_to_none=True)

    def fisher(method, n=samples):
        return lambda: compute_fisher(model, texts[:n], tok, max_length=seq, micro_batch=micro_batch, method=method,
                                      gradient_checkpointing=gradient_checkpointing)[1]

    contenders = {"plain": plain, "batch": fisher("batch"), "loop": fisher("loop")}
    ran = fisher("batch", micro_batch)()   # warm-up; its metadata says what ran (precision, checkpointing)
    plain()
    best = {k: (float("inf"), 0.0) for k in contenders}
    for _ in range(repeats):
        for k, fn in contenders.items():
            s, mib = _peak_mib(fn)
            best[k] = (min(best[k][0], s), max(best[k][1], mib))
    tps = {k: tokens / s for k, (s, _) in best.items()}
    return {"bench": "fisher", "ratio": tps["batch"] / tps["plain"], "ratio_loop": tps["loop"] / tps["plain"],
            "fisher_tokens_per_s": tps["batch"], "loop_tokens_per_s": tps["loop"],
            "plain_tokens_per_s": tps["plain"],
            "peak_mib": {k: round(m, 1) for k, (_, m) in best.items()},
            "device": str(dev), "model": model_spec or f"llama hidden {hidden}, {layers} layers",
            "precision": ran["precision"], "gradient_checkpointing": ran["gradient_checkpointing"],
            "samples": samples, "seq": seq, "micro_batch": micro_batch,
            "fisher_modules": "lora-targets", "threads": torch.get_num_threads()}


def main(args) -> int:
    """`e2wm bench ewc` or `e2wm bench fisher`, by `args.what`."""
    if args.what == "ewc":
        r = run_ewc()
        return report(r, f"EWC-LoRA step {r['ewc_step_ms']:.1f} ms vs plain LoRA step {r['plain_step_ms']:.1f} ms: "
                      f"ratio {r['ratio']:.3f}")
    from e2wm.train.model import check_model_spec
    if args.model is not None:
        check_model_spec(args.model, "--model")
    r = run_fisher(samples=args.samples, seq=args.seq, micro_batch=args.micro_batch, model_spec=args.model,
                   precision=args.precision, gradient_checkpointing=getattr(args, "gradient_checkpointing", False))
    return report(r, f"{r['model']} ({r['precision']}), micro-batch {r['micro_batch']}, {r['samples']} samples of "
                  f"{r['seq']} tokens, {r['device']}:",
                  f"  plain LoRA forward+backward {r['plain_tokens_per_s']:>9.0f} tokens/s  "
                  f"peak {r['peak_mib']['plain']:.0f} MiB",
                  f"  Fisher, batch (default)     {r['fisher_tokens_per_s']:>9.0f} tokens/s  "
                  f"peak {r['peak_mib']['batch']:.0f} MiB  ratio {r['ratio']:.3f}",
                  f"  Fisher, loop (reference)    {r['loop_tokens_per_s']:>9.0f} tokens/s  "
                  f"peak {r['peak_mib']['loop']:.0f} MiB  ratio {r['ratio_loop']:.3f}")
