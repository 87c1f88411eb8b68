"""The checks of `run_gpu_checks.sh` that run e2wm (one per call; under a launcher where named):

  make-model RESULTS DIR [--dry]          a 13B-layer-shaped Llama (hidden 5120, 4 layers), saved like a hub model,
                                          and training rows (DIR/../rows.jsonl)
  load-zero3 RESULTS DIR [--dry]          (torchrun) from_pretrained under ZeRO-3: partitioned, weights as saved
  fisher RESULTS [--dry] -- FISHER ARGS   (torchrun) `e2wm fisher` in this process: tokens/s, MFU, peak memory
                                          in all and across one decoder layer's forward
  train RESULTS NAME STEPS [--dry] [--compare METRICS AFTER] -- TRAIN ARGS
                                          (deepspeed launcher) `e2wm train` in this process: tokens/s, MFU, peak;
                                          with --compare, the steps after AFTER match METRICS's (a resume)
  eval RESULTS [--dry] -- BENCH ARGS      `e2wm bench eval`: items/s
  summary RESULTS OUT CHECKS [--dry]      every check's result into OUT/summary.json, one table

On a GPU, memory is the allocator's peak (torch.cuda.max_memory_allocated) and MFU counts the FLOPs e2wm's
trainer counts (metrics.flops_per_token, LoRA: 4·N + attention) against the GPU's dense bf16 peak. --dry (CPU,
tiny shapes): the same runs, with the GPU-only figures and limits left out.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from gpu_kit import finish

GIB = 2**30
SHAPE = "llama-13b"   # e2wm.train.model.SHAPES: its hidden size, MLP width, heads and vocabulary
LAYERS = 4
DRY_SHAPE = dict(vocab_size=320, hidden_size=64, intermediate_size=176, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=2048)


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _reset_peak() -> None:
    import torch
    if _cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    import torch
    return round(torch.cuda.max_memory_allocated() / GIB, 3) if _cuda() else None


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _exit(code: int) -> None:
    """Leave without the interpreter's teardown, as e2wm's entry points do (ZeRO-3 can abort in it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---------------------------------------------------------------- the model

def make_model(results: Path, folder: Path, dry: bool) -> int:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from e2wm.bench.train import synthetic_rows
    from e2wm.train.dist import device
    from e2wm.train.model import SHAPES, byte_tokenizer
    shape = dict(DRY_SHAPE) if dry else dict(SHAPES[SHAPE][1])
    cfg = LlamaConfig(**{**shape, "num_hidden_layers": LAYERS}, tie_word_embeddings=False, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device()):   # initialised where it runs: seconds on a GPU for 1.6e9 weights
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(str(folder))
    byte_tokenizer().save_pretrained(str(folder))
    rows = synthetic_rows(16 if dry else 64)   # training rows of E2WM's length mix, beside the model
    (folder.parent / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = sum(p.numel() for p in model.parameters())
    return finish(results, "model", True, "", layers=LAYERS, hidden=cfg.hidden_size, params=n,
                  bf16_gib=round(2 * n / GIB, 3), seconds=round(time.perf_counter() - t0, 1))


def _model_counts(folder: Path) -> tuple[object, int, int]:
    """(config, parameters, embedding parameters) of the saved model, counted on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from e2wm.train.metrics import count_params
    cfg = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        total, emb = count_params(AutoModelForCausalLM.from_config(cfg))
    return cfg, total, emb


def _file_tensors(folder: Path, names: list[str]) -> dict:
    from safetensors import safe_open
    index = folder / "model.safetensors.index.json"
    where = json.loads(index.read_text())["weight_map"] if index.is_file() else {}
    out = {}
    for name in names:
        with safe_open(str(folder / where.get(name, "model.safetensors")), "pt") as fh:
            out[name] = fh.get_tensor(name)
    return out


def load_zero3(results: Path, folder: Path, dry: bool) -> int:
    """from_pretrained with a HfDeepSpeedConfig (ZeRO-3) alive, as training and the Fisher load: every weight
    partitioned as it loads, gathered ones equal to the file's, and (GPU) the device's peak within 1.5 times the
    bf16 model (no fp32 copy, no whole-model staging beyond one weight)."""
    import resource

    import deepspeed
    import torch
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from e2wm.train import dist as edist
    from e2wm.train.model import load_model
    with edist.process_group() as (rank, world):
        ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "bf16": {"enabled": True}}
        keep = HfDeepSpeedConfig(ds)
        _reset_peak()
        t0 = time.perf_counter()
        model = load_model(str(folder), torch.bfloat16, field="--model")
        seconds = time.perf_counter() - t0
        peak = _peak_gib()
        params = dict(model.named_parameters())
        partitioned = all(hasattr(p, "ds_id") for p in params.values())
        released = all(p.numel() == 0 for p in params.values() if hasattr(p, "ds_id"))
        full = sum(getattr(p, "ds_numel", p.numel()) for p in params.values())
        local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params.values())
        layer = sorted(n for n in params if ".layers." in n)
        names = [n for n in ("model.embed_tokens.weight", "lm_head.weight") if n in params] + [layer[0], layer[-1]]
        saved = _file_tensors(folder, names)
        same = []
        for name in names:
            with deepspeed.zero.GatheredParameters([params[name]]):
                same.append(torch.equal(params[name].data.cpu(), saved[name]))
        unset_hf_deepspeed_config()
        del keep
    if rank:
        return 0
    model_gib = 2 * full / GIB
    problems = [] if partitioned and released else ["not every weight was partitioned as it loaded"]
    problems += [f"{n} differs from the file once gathered" for n, ok in zip(names, same) if not ok]
    if peak is not None and peak > 1.5 * model_gib:
        problems.append(f"device peak {peak:.2f} GiB over 1.5 x the {model_gib:.2f} GiB bf16 model")
    return finish(results, "load_zero3", not problems, "; ".join(problems), world=world, seconds=round(seconds, 1),
                  partitioned=partitioned, local_share=round(local / full, 3), model_gib=round(model_gib, 3),
                  peak_gib=peak, host_maxrss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))


# ---------------------------------------------------------------- the Fisher

class _LayerPeaks:
    """Global forward hooks on every decoder layer: the device's peak across one layer's forward above what was
    allocated as it began (gathered weights and activations), kept apart from the run's overall peak."""

    def __init__(self):
        import torch
        self.torch, self.start, self.layer_peak, self.overall = torch, [], 0, 0
        mod = torch.nn.modules.module
        self.handles = [mod.register_module_forward_pre_hook(self._pre), mod.register_module_forward_hook(self._post)]

    def _is_layer(self, module) -> bool:
        return type(module).__name__.endswith("DecoderLayer")

    def _pre(self, module, args):
        if self._is_layer(module):
            c = self.torch.cuda
            self.overall = max(self.overall, c.max_memory_allocated())
            c.reset_peak_memory_stats()
            self.start.append(c.memory_allocated())

    def _post(self, module, args, out):
        if self._is_layer(module) and self.start:
            c = self.torch.cuda
            self.layer_peak = max(self.layer_peak, c.max_memory_allocated() - self.start.pop())
            self.overall = max(self.overall, c.max_memory_allocated())

    def close(self) -> int:
        for h in self.handles:
            h.remove()
        return max(self.overall, self.torch.cuda.max_memory_allocated())


def fisher(results: Path, dry: bool, args: list[str]) -> int:
    """`e2wm fisher ARGS` (its entry, in this process), its compute timed and its memory measured; F finite,
    non-negative and non-zero on every covered weight; the metadata's load partitioned under ZeRO-3."""
    from dataclasses import fields

    from e2wm.train import fisher as F
    from e2wm.train import fisher_run
    from e2wm.train.fisher_config import FisherConfig
    from e2wm.train.fisher_io import load_fisher
    from e2wm.train.metrics import flops_per_token, peak_flops
    missing = [f for f in ("precision", "gradient_checkpointing") if f not in {x.name for x in fields(FisherConfig)}]
    if missing:
        return finish(results, "fisher_bf16_zero3", False, f"FisherConfig has no {', '.join(missing)} field: "
                      "this check runs `e2wm fisher --precision bf16 --gradient-checkpointing`")
    timed = {}
    inner = F.compute_fisher_deepspeed

    def measured(*a, **kw):
        import torch
        _reset_peak()
        timed["resident"] = torch.cuda.memory_allocated() if _cuda() else None
        hooks = _LayerPeaks() if _cuda() else None
        t0 = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            if _cuda():
                torch.cuda.synchronize()
            timed["seconds"] = time.perf_counter() - t0
            if hooks:
                timed["peak"], timed["layer"] = hooks.close(), hooks.layer_peak
    F.compute_fisher_deepspeed = measured
    code = fisher_run.entry(args)
    if _rank():
        return code
    out = Path(args[args.index("--out") + 1])
    folder = Path(args[args.index("--model") + 1])
    tensors, meta = load_fisher(out)
    bad = [n for n, t in tensors.items() if not bool((t.isfinite() & (t >= 0)).all()) or float(t.sum()) <= 0]
    tokens = int(meta.get("tokens", 0))
    seconds = timed.get("seconds", float("nan"))
    cfg, n, emb = _model_counts(folder)
    seq = tokens / max(int(meta.get("samples", 1)), 1)
    peak = peak_flops(0)
    tps = tokens / seconds
    problems = [f"{len(bad)} of {len(tensors)} weights' F not finite, negative or zero (first {bad[0]})"] if bad else []
    if meta.get("load", "partitioned") != "partitioned":
        problems.append(f"the model loaded {meta['load']}, not partitioned")
    gib = (lambda b: None if b is None else round(b / GIB, 3))
    return finish(results, "fisher_bf16_zero3", code == 0 and not problems, "; ".join(problems),
                  samples=meta.get("samples"), tokens=tokens, seconds=round(seconds, 2), tokens_per_s=round(tps, 1),
                  mfu=None if peak is None else round(tps * flops_per_token(cfg, n, emb, seq, False) / peak, 4),
                  peak_gib=gib(timed.get("peak")), resident_gib=gib(timed.get("resident")),
                  layer_forward_peak_gib=gib(timed.get("layer")), layers=cfg.num_hidden_layers,
                  load=meta.get("load", "not recorded"), precision=meta.get("precision", "not recorded"))


# ---------------------------------------------------------------- training and evaluation

def train(results: Path, name: str, steps: int, dry: bool, compare: tuple[Path, int] | None, args: list[str]) -> int:
    """`e2wm train ARGS` (its entry, in this process); STEPS rows in metrics.jsonl, finite losses; tokens/s and
    MFU over the steps after the first, the device's peak; with `compare`, a resume: every step after AFTER
    equal to the first run's (to 1e-4 on CPU, 2e-2 relative in bf16 on a GPU)."""
    import torch

    from e2wm.train import __main__ as train_main
    timed = {}
    try:   # the CPU Adam of zero3_offload: its construction JIT-builds (or loads) the op
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        init = DeepSpeedCPUAdam.__init__

        def timed_init(self, *a, **kw):
            t0 = time.perf_counter()
            init(self, *a, **kw)
            timed["cpu_adam_s"] = round(time.perf_counter() - t0, 1)
        DeepSpeedCPUAdam.__init__ = timed_init
    except ImportError:
        pass
    _reset_peak()
    t0 = time.perf_counter()
    code = train_main.main(args)
    seconds = time.perf_counter() - t0
    if _rank():
        return code
    out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("out=")))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] if code == 0 else []
    problems = [] if code == 0 else [f"e2wm train exited {code}"]
    regularizer = next((a.split("=", 1)[1] for a in args if a.startswith("regularizer.kind=")), "default")
    if code == 0 and len(rows) != steps:
        problems.append(f"{len(rows)} steps logged, expected {steps}")
    if any(r["loss"] is None or not math.isfinite(r["loss"]) for r in rows):
        problems.append("a loss is not finite")
    figures = {"regularizer": regularizer, "steps": len(rows), "seconds": round(seconds, 1), "peak_gib": _peak_gib(),
               **timed}
    built = os.environ.get("E2WM_KIT_CPU_ADAM_BUILD")   # run_gpu_checks.sh's build in the background
    if "cpu_adam_s" in timed and built and Path(built).is_file():
        figures["cpu_adam_build"] = Path(built).read_text().strip()
    timed_rows = rows[1:] or rows
    if timed_rows:
        figures["tokens_per_s"] = round(sum(r["tokens"] for r in timed_rows) /
                                        sum(r["tokens"] / r["tokens_per_s"] for r in timed_rows), 1)
        mfu = [r["mfu"] for r in timed_rows if r.get("mfu") is not None]
        figures["mfu"] = round(sum(mfu) / len(mfu), 4) if mfu else None
        figures["loss_first"], figures["loss_last"] = round(rows[0]["loss"], 4), round(rows[-1]["loss"], 4)
    if compare is not None and rows:
        before = {r["step"]: r["loss"] for r in map(json.loads, compare[0].read_text().splitlines())}
        again = [(r["loss"], before.get(r["step"])) for r in rows if r["step"] > compare[1]]
        tol = 1e-4 if dry or not torch.cuda.is_available() else 2e-2
        diff = max((abs(a - b) / max(abs(b), 1e-8) for a, b in again if b is not None), default=float("inf"))
        figures.update(resumed_steps=len(again), max_rel_diff=diff)
        if not again or any(b is None for _, b in again) or diff > tol:
            problems.append(f"the resumed steps differ from the first run's by {diff:.2g} (limit {tol:g})")
    return finish(results, name, not problems, "; ".join(problems), **figures)


def evaluate(results: Path, dry: bool, args: list[str]) -> int:
    """`e2wm bench eval ARGS`: items/s of multiple-choice scoring and of generation, the device's peak."""
    import contextlib
    import io

    from e2wm import cli
    text = io.StringIO()
    _reset_peak()
    with contextlib.redirect_stdout(text):
        code = cli.main(["bench", "eval", *args])
    print(text.getvalue(), end="")
    if code:
        return finish(results, "eval", False, f"e2wm bench eval exited {code}")
    r = json.loads(text.getvalue().strip().splitlines()[-1])
    g = r["generation"]
    return finish(results, "eval", True, "", mc_items_per_s=r["scorer_items_per_s"],
                  mc_short_items_per_s=r["short_prompts"]["scorer_items_per_s"],
                  mc_vs_loop=r["ratio"], gen_greedy_items_per_s=g["greedy"]["batched_items_per_s"],
                  gen_beams4_items_per_s=g["beams4"]["batched_items_per_s"], new_tokens=g["new_tokens"],
                  max_abs_score_diff=r["max_abs_score_diff"], peak_gib=_peak_gib())


# ---------------------------------------------------------------- summary

def summary(results: Path, out: Path, dry: bool, order: list[str]) -> int:
    """OUT/summary.json and a table: each check's status, its figures; exit 1 when one is not PASS/SKIP."""
    checks = {}
    for name in order:
        f = results / f"{name}.json"
        missing = {"check": name, "status": "FAIL", "why": "no result (see steps.log)", "figures": {}}
        checks[name] = json.loads(f.read_text()) if f.is_file() else missing
    failed = [n for n, c in checks.items() if c["status"] == "FAIL"]
    (out / "summary.json").write_text(json.dumps({"dry": dry, "failed": failed, "checks": checks}, indent=1,
                                                 default=str))
    print("\ncheck               status  figures")
    for n, c in checks.items():
        figs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in c["figures"].items()
                         if not isinstance(v, (dict, list)) and v is not None)
        print(f"{n:<19} {c['status']:<7} {figs}" + (f"\n{'':<28}{c['why']}" if c["why"] else ""))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    argv = [a for a in argv if not a.startswith("--local_rank")]   # the deepspeed launcher adds it (LOCAL_RANK is set)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    head = argv[:argv.index("--")] if "--" in argv else argv
    dry = "--dry" in head
    head = [a for a in head if a != "--dry"]
    what, results = head[0], Path(head[1])
    if what == "make-model":
        return make_model(results, Path(head[2]), dry)
    if what == "load-zero3":
        return load_zero3(results, Path(head[2]), dry)
    if what == "fisher":
        return fisher(results, dry, rest)
    if what == "train":
        compare = (Path(head[head.index("--compare") + 1]), int(head[head.index("--compare") + 2])) \
            if "--compare" in head else None
        return train(results, head[2], int(head[3]), dry, compare, rest)
    if what == "eval":
        return evaluate(results, dry, rest)
    if what == "summary":
        return summary(results, Path(head[2]), dry, [n for n in head[3].split(",") if n])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception:   # a crash is this check's failure, with its traceback in the step's log
        import traceback
        traceback.print_exc()
        code = 1
    _exit(code)
