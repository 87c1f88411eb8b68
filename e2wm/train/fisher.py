"""Per-sample empirical Fisher diagonal of base weights: single process or DeepSpeed ZeRO-0/2/3.

F[w] = (1/N) * sum_i (d loss_i / d w)^2, where loss_i is the mean next-token cross-entropy of
sample i over its own tokens. Each sample gets its own backward pass, so the result does not
depend on the micro-batch size (the micro-batch only shares the forward pass).

Distributed reduction (rank r processes texts[r::world]):
* ZeRO-0/2 (parameters replicated): each rank sums its own squares over the full tensor;
  one all_reduce(SUM) at the end. Every rank then holds the full F.
* ZeRO-3 (parameters partitioned): in a post-accumulate-grad hook each rank squares its
  per-sample gradient, pads it to world * ds_tensor.numel() and reduce-scatters (SUM), keeping
  only its own partition (shaped like p.ds_tensor), so F memory per rank is about 1/world.
All accumulation is fp32. `--model tiny` means `tiny_causal_lm()` with a byte tokenizer
(token = byte % vocab), so tests and the quickstart need no download.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F_

from e2wm.train.model import _base_name, add_lora, base_weight_names, tiny_causal_lm

FISHER_FILE = "fisher.safetensors"


class FisherInterrupted(RuntimeError):
    """Raised by the `stop_after` debug switch, to test checkpoint/resume."""


# ---------------------------------------------------------------- tokenisation

def encode(texts: list[str], tokenizer, max_length: int, vocab: int | None = None) -> list[list[int]]:
    """Token ids per text, truncated to max_length; tokenizer None = bytes modulo `vocab`."""
    out = []
    for t in texts:
        if tokenizer is None:
            ids = [b % vocab for b in t.encode("utf-8")[:max_length]]
        else:
            ids = tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
        out.append(list(ids))
    return out


# ---------------------------------------------------------------- storage

def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, path)  # readers never see a half-written file


def save_fisher(out_dir, tensors: dict[str, torch.Tensor], metadata: dict, name: str = FISHER_FILE) -> Path:
    """Write `tensors` (+ string metadata) to out_dir/name atomically; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_save(tensors, out / name, metadata)
    return out / name


def load_fisher(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a Fisher file, or from out_dir/fisher.safetensors for a directory."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        p = p / FISHER_FILE
    with safe_open(str(p), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})


def shard_name(rank: int, world: int) -> str:
    return f"fisher-rank{rank:03d}-of-{world:03d}.safetensors"


# ---------------------------------------------------------------- accumulation

def select_base_params(model, modules: str = "lora-targets", targets=("q_proj", "v_proj")) -> dict:
    """{base-model name: parameter} of the weights the Fisher covers, sorted by name."""
    is_peft = any("lora_" in n for n, _ in model.named_parameters())
    wanted = set(base_weight_names(model, modules)) if is_peft else None
    out = {}
    for n, p in model.named_parameters():
        if "lora_" in n:
            continue
        name = _base_name(n)
        if modules == "all" or (wanted is not None and name in wanted) or \
                (wanted is None and name.endswith(".weight") and name.split(".")[-2] in targets):
            out[name] = p
    if modules not in ("all", "lora-targets"):
        raise ValueError(f"modules must be 'lora-targets' or 'all', got {modules!r}")
    return dict(sorted(out.items()))


class _SquareSum:
    """Post-accumulate-grad hooks that add grad**2 into fp32 sums (full, or a ZeRO-3 partition)."""

    def __init__(self, params: dict, partitioned: bool, world: int = 1):
        self.params, self.partitioned, self.world = params, partitioned, world
        self.sums = {n: torch.zeros(p.ds_tensor.numel() if partitioned else p.numel(), dtype=torch.float32)
                     for n, p in params.items()}
        self._names = {id(p): n for n, p in params.items()}
        self._handles, self.scale = [], 1.0

    def _hook(self, p) -> None:
        sq = p.grad.detach().float().pow(2).reshape(-1) * self.scale  # scale 0 = padding sample
        p.grad = None  # one full gradient alive at a time
        acc = self.sums[self._names[id(p)]]
        if not self.partitioned:
            acc += sq
            return
        import torch.distributed as dist

        pad = acc.numel() * self.world - sq.numel()
        if pad:
            sq = torch.cat([sq, sq.new_zeros(pad)])
        part = torch.empty_like(acc)
        dist.reduce_scatter_tensor(part, sq, op=dist.ReduceOp.SUM)
        acc += part

    def __enter__(self):
        for p in self.params.values():
            p.requires_grad_(True)  # frozen base weights need grads only for the Fisher
            self._handles.append(p.register_post_accumulate_grad_hook(self._hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for p in self.params.values():
            p.requires_grad_(False)
            p.grad = None
        self._handles = []


def _per_sample_losses(forward, batch: list[list[int]]) -> list[torch.Tensor]:
    """Mean next-token CE per sample over its own (non-pad) tokens, from one padded forward."""
    width = max(len(s) for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    logits = forward(input_ids=ids, attention_mask=mask).logits.float()
    ce = F_.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    m = mask[:, 1:].float()
    return list((ce * m).sum(1) / m.sum(1))


# ---------------------------------------------------------------- checkpoints

def _ckpt_dir(out_dir) -> Path:
    return Path(out_dir) / "checkpoint"


def _load_checkpoint(out_dir, rank: int, fingerprint: str):
    """(step, samples, tokens, sums) of the last committed checkpoint, or None."""
    d = _ckpt_dir(out_dir)
    if not (d / "state.json").exists():
        return None
    state = json.loads((d / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"{d}: checkpoint is from different arguments; remove it or change --out")
    sums, meta = load_fisher(d / f"rank{rank:03d}-step{state['step']:08d}.safetensors")
    return state["step"], int(meta["samples"]), int(meta["tokens"]), sums


def _save_checkpoint(out_dir, rank: int, world: int, step: int, samples: int, tokens: int,
                     sums: dict, fingerprint: str, barrier) -> None:
    """Each rank writes its partial sums; after a barrier rank 0 commits state.json, then old files go."""
    d = _ckpt_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_save(sums, d / f"rank{rank:03d}-step{step:08d}.safetensors",
                 {"samples": samples, "tokens": tokens, "step": step})
    barrier()  # a step is committed only once every rank has its file
    if rank == 0:
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps({"step": step, "world": world, "fingerprint": fingerprint}))
        os.replace(tmp, d / "state.json")
    barrier()
    for f in d.glob(f"rank{rank:03d}-step*.safetensors"):
        if f.name != f"rank{rank:03d}-step{step:08d}.safetensors":
            f.unlink()


# ---------------------------------------------------------------- main loop

def _accumulate(forward, params: dict, local: list[list[int]], n_steps: int, micro_batch: int, *,
                partitioned: bool, rank: int, world: int, out_dir=None, fingerprint: str = "",
                checkpoint_every: int = 0, stop_after: int | None = None, barrier=lambda: None,
                batched_forward: bool = True):
    """Run n_steps micro-batches (padded with zero-weight samples so every rank runs the same graph)."""
    acc = _SquareSum(params, partitioned, world)
    step, samples, tokens = 0, 0, 0
    if out_dir is not None and checkpoint_every:
        got = _load_checkpoint(out_dir, rank, fingerprint)
        if got is not None:
            step, samples, tokens, sums = got
            acc.sums = {n: sums[n].clone() for n in acc.sums}
    ckpt_steps = max(1, math.ceil(checkpoint_every / micro_batch)) if checkpoint_every else 0
    filler = local[0] if local else [1, 2]  # any 2-token sample; its gradient is scaled to 0
    with acc:
        while step < n_steps:
            real = local[step * micro_batch:(step + 1) * micro_batch]
            batch = real + [filler] * (micro_batch - len(real))
            # ZeRO-3 releases gathered params after a backward, so a shared graph cannot be re-walked:
            # there each sample gets its own forward; otherwise one padded forward serves the batch
            groups = [batch] if batched_forward else [[s] for s in batch]
            i = 0
            for group in groups:
                losses = _per_sample_losses(forward, group)
                for j, loss in enumerate(losses):
                    acc.scale = 1.0 if i < len(real) else 0.0
                    loss.backward(inputs=list(params.values()), retain_graph=j < len(losses) - 1)
                    i += 1
            samples += len(real)
            tokens += sum(len(s) - 1 for s in real)
            step += 1
            if ckpt_steps and step % ckpt_steps == 0 and step < n_steps:
                _save_checkpoint(out_dir, rank, world, step, samples, tokens, acc.sums, fingerprint, barrier)
            if stop_after is not None and step * micro_batch >= stop_after and step < n_steps:
                raise FisherInterrupted(f"stopped after {step} micro-batches (stop_after={stop_after})")
    return acc.sums, samples, tokens


def _fingerprint(**kw) -> str:
    return json.dumps(kw, sort_keys=True)


def compute_fisher(model, texts: list[str], *, tokenizer=None, max_length: int = 256, micro_batch: int = 1,
                   modules: str = "lora-targets", out_dir=None, checkpoint_every: int = 0,
                   stop_after: int | None = None, model_name: str = "model"):
    """Single-process Fisher; returns ({base name: F tensor}, metadata). Saves to out_dir if given."""
    from e2wm.train.corpus import corpus_hash

    seqs = [s for s in encode(texts, tokenizer, max_length, model.config.vocab_size) if len(s) >= 2]
    if not seqs:
        raise ValueError("no sample has 2 or more tokens; nothing to predict")
    params = select_base_params(model, modules)
    meta = {"model": model_name, "corpus_sha256": corpus_hash(texts), "modules": modules,
            "max_length": max_length, "zero_stage": "none", "world_size": 1}
    model.eval()  # no dropout: per-sample gradients must be deterministic
    sums, n, tok = _accumulate(model, params, seqs, math.ceil(len(seqs) / micro_batch), micro_batch,
                               partitioned=False, rank=0, world=1, out_dir=out_dir,
                               fingerprint=_fingerprint(**meta), checkpoint_every=checkpoint_every,
                               stop_after=stop_after)
    fisher = {k: (sums[k] / n).view(p.shape) for k, p in params.items()}
    meta.update(samples=n, tokens=tok)
    if out_dir is not None:
        save_fisher(out_dir, fisher, meta)
    return fisher, {k: str(v) for k, v in meta.items()}


def compute_fisher_deepspeed(engine, texts: list[str], *, zero_stage: int, tokenizer=None, max_length: int = 256,
                             micro_batch: int = 1, modules: str = "lora-targets", out_dir=None,
                             checkpoint_every: int = 0, stop_after: int | None = None,
                             model_name: str = "model", consolidate: bool = True):
    """Fisher inside an initialised DeepSpeed engine; rank r uses texts[r::world].

    Returns (tensors, metadata): under ZeRO-0/2 the full F on every rank; under ZeRO-3 this
    rank's flat partitions (the consolidated file, if written, is assembled on rank 0).
    """
    import torch.distributed as dist

    from e2wm.train.corpus import corpus_hash

    rank, world = dist.get_rank(), dist.get_world_size()
    vocab = engine.module.config.vocab_size
    seqs = [s for s in encode(texts, tokenizer, max_length, vocab) if len(s) >= 2]
    local = seqs[rank::world]
    n_steps = math.ceil(math.ceil(len(seqs) / world) / micro_batch)  # same on every rank: no comm needed
    params = select_base_params(engine.module, modules)
    partitioned = zero_stage == 3
    meta = {"model": model_name, "corpus_sha256": corpus_hash(texts), "modules": modules,
            "max_length": max_length, "zero_stage": zero_stage, "world_size": world}
    engine.module.eval()
    # replicated params: call the bare module, since the engine's forward insists on engine.backward()
    forward = engine if partitioned else engine.module
    sums, n, tok = _accumulate(forward, params, local, n_steps, micro_batch, partitioned=partitioned,
                               rank=rank, world=world, out_dir=out_dir, fingerprint=_fingerprint(**meta),
                               checkpoint_every=checkpoint_every, stop_after=stop_after, barrier=dist.barrier,
                               batched_forward=not partitioned)
    counts = torch.tensor([n, tok], dtype=torch.float64)
    dist.all_reduce(counts)
    n, tok = int(counts[0]), int(counts[1])
    meta.update(samples=n, tokens=tok)
    smeta = {k: str(v) for k, v in meta.items()}
    if not partitioned:  # replicated params: sum every rank's squares once, at the end
        for v in sums.values():
            dist.all_reduce(v)
        fisher = {k: (sums[k] / n).view(p.shape) for k, p in params.items()}
        if out_dir is not None and rank == 0:
            save_fisher(out_dir, fisher, meta)
        dist.barrier()
        return fisher, smeta
    part = {k: v / n for k, v in sums.items()}
    shapes = {k: list(p.ds_shape) for k, p in params.items()}
    if out_dir is not None:
        save_fisher(out_dir, part, {**meta, "rank": rank, "shapes": json.dumps(shapes)}, shard_name(rank, world))
        if consolidate:
            full = {}
            for k, v in part.items():  # gather one tensor at a time: rank 0 peaks at |F| + one tensor
                buf = torch.empty(v.numel() * world)
                dist.all_gather_into_tensor(buf, v)
                if rank == 0:
                    full[k] = buf[:math.prod(shapes[k])].view(shapes[k]).clone()
            if rank == 0:
                save_fisher(out_dir, full, meta)
        dist.barrier()
    return part, smeta


# ---------------------------------------------------------------- CLI

def _load_model(spec: str):
    """(model, tokenizer) for a path or hub id; `tiny` = tiny_causal_lm() with the byte tokenizer."""
    if spec == "tiny":
        return tiny_causal_lm(), None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(spec)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="e2wm fisher", description="Empirical Fisher diagonal of base weights.")
    ap.add_argument("--model", required=True, help="HF path or id; `tiny` = built-in tiny Llama, byte tokens")
    ap.add_argument("--corpus", default="builtin:pydoc", help=".txt, .jsonl, datasets dir, or builtin:pydoc")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--modules", choices=["lora-targets", "all"], default="lora-targets")
    ap.add_argument("--lora-targets", default="q_proj,v_proj", help="comma-separated module names")
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--zero-stage", type=int, choices=[0, 2, 3], default=None,
                    help="DeepSpeed ZeRO stage (default: plain single process, or 0 under a launcher)")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint partial sums every K samples")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # debug: simulate a crash
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return ap


def main_fisher(argv=None) -> int:
    from e2wm.train import dist as edist
    from e2wm.train.corpus import load_texts

    a = build_parser().parse_args(argv)
    texts = load_texts(a.corpus, a.max_samples)
    model, tok = _load_model(a.model)
    kw = dict(tokenizer=tok, max_length=a.max_length, micro_batch=a.micro_batch, modules=a.modules,
              out_dir=a.out, checkpoint_every=a.checkpoint_every, stop_after=a.stop_after, model_name=a.model)
    if a.zero_stage is None and not edist.is_distributed_env():
        model = add_lora(model, targets=tuple(a.lora_targets.split(",")))  # zero-init B: base outputs unchanged
        _, meta = compute_fisher(model, texts, **kw)
        print(f"fisher: {meta['samples']} samples, {meta['tokens']} tokens -> {Path(a.out) / FISHER_FILE}")
        return 0
    import torch.distributed as dist

    own_group = not dist.is_initialized()  # a caller that set up the group keeps it
    edist.init_distributed()
    engine = edist.build_engine(add_lora(model, targets=tuple(a.lora_targets.split(","))),
                                a.zero_stage or 0, a.micro_batch)
    try:
        _, meta = compute_fisher_deepspeed(engine, texts, zero_stage=a.zero_stage or 0, **kw)
    finally:
        edist.shutdown(engine, destroy_group=own_group)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fisher: {meta['samples']} samples, {meta['tokens']} tokens -> {Path(a.out) / FISHER_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_fisher())
