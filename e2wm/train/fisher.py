"""Per-sample empirical Fisher diagonal of base weights: single process or DeepSpeed ZeRO-0/2/3.

F[w] = (1/N) * sum_i (d loss_i / d w)^2, where loss_i is the mean next-token cross-entropy of
sample i over its own tokens (its text encoded by `e2wm.train.tokens`, truncated to max_length).
Two methods give the same F (to float rounding), whatever the micro-batch:
* batch (default): linear weights get their per-sample squares from one forward and one backward
  per micro-batch (`e2wm.train.per_sample`); other covered parameters (embeddings, norms, a tied
  lm_head) take the loop path below.
* loop (the reference): each sample gets its own backward pass (the micro-batch shares the forward,
  except under ZeRO-3, where each sample also gets its own forward).

Distributed reduction (rank r processes texts[r::world]):
* ZeRO-0/2 (parameters replicated): each rank sums its own squares over the full tensor;
  one all_reduce(SUM) at the end. Every rank then holds the full F.
* ZeRO-3 (parameters partitioned): each rank's sum of squares of a weight (per micro-batch under
  batch, per sample under loop) is padded to world * ds_tensor.numel() and reduce-scattered (SUM),
  keeping only its own partition (shaped like p.ds_tensor), so F memory per rank is about 1/world.
  The reduce-scatters are asynchronous: the backward goes on while up to two are in flight, and they
  land in order (bit-identical to waiting on each) by the end of the micro-batch.
Precision: the weights' dtype, fp32 or bf16 (`--precision`), sets the forward and backward; the per-sample
squares are formed and summed in fp32 either way (bf16 activations and output gradients are upcast
before the per-sample product; a looped weight's bf16 gradient is upcast before squaring). With
`gradient_checkpointing` each decoder layer is recomputed in backward (`e2wm.train.layer_recompute`), so
saved activations are one layer's; the batch method then captures a layer's input during its recompute.
All accumulation is fp32, on the rank's device. Checkpoints: `e2wm.train.fisher_checkpoint`; the stage
(config, command line, engine): `e2wm.train.fisher_run`.
"""
from __future__ import annotations

import contextlib
import collections
import json
import math

import torch
import torch.nn.functional as F_

from e2wm.errors import E2WMError
from e2wm.train.fisher_checkpoint import Checkpoints, fingerprint, metadata
from e2wm.train.fisher_io import FISHER_FILE, all_finite, save_fisher, shard_name, weight_sums
from e2wm.train.layer_recompute import Recompute
from e2wm.train.model import base_name, base_weight_names, default_targets
from e2wm.train.tokens import encode


class FisherInterrupted(RuntimeError):
    """Raised at `stop_after` samples, which tests set to interrupt a run and resume it."""


# ---------------------------------------------------------------- accumulation

def select_base_params(model, modules: str = "lora-targets", targets=None) -> dict:
    """{base-model name: parameter} of the weights the Fisher covers, sorted by name (on a model without
    LoRA, `targets` or the architecture's default LoRA targets)."""
    if modules not in ("all", "lora-targets"):
        raise E2WMError(f"modules must be 'lora-targets' or 'all', got {modules!r}")
    is_peft = any("lora_" in n for n, _ in model.named_parameters())
    wanted = set(base_weight_names(model, modules)) if is_peft else None
    targets = targets or default_targets(model)
    out = {}
    for n, p in model.named_parameters():
        if "lora_" in n:
            continue
        name = base_name(n)
        if modules == "all" or (wanted is not None and name in wanted) or \
                (wanted is None and name.endswith(".weight") and name.split(".")[-2] in targets):
            out[name] = p
    return dict(sorted(out.items()))


class _SquareSum:
    """fp32 sums of squared per-sample gradients (full, or a ZeRO-3 partition), fed by `add`; with
    `hooked`, post-accumulate-grad hooks add grad**2 of those parameters (the per-sample path)."""

    def __init__(self, params: dict, partitioned: bool, world: int, device, hooked: dict | None = None):
        self.params, self.partitioned, self.world = params, partitioned, world
        self.hooked = params if hooked is None else hooked
        self.sums = {n: torch.zeros(p.ds_tensor.numel() if partitioned else p.numel(), device=device,
                                    dtype=torch.float32) for n, p in params.items()}
        self._names = {id(p): n for n, p in self.hooked.items()}
        self._handles, self.scale = [], 1.0
        self._pending = collections.deque()   # (work, partition, name, padded squares kept alive) in flight

    IN_FLIGHT = 2   # ZeRO-3 reduce-scatters in flight at once: each holds a padded full weight's squares

    def add(self, name: str, sq: torch.Tensor) -> None:
        """Add a flat fp32 sum of squares of the full weight: into the sum, or (ZeRO-3) reduce-scattered
        into this rank's partition of it. The reduce-scatter is asynchronous, so the backward goes on to the
        next layers while it runs; at most IN_FLIGHT are pending, and they land in the order they were
        started (so the sums are bit-identical to waiting on each), by `flush` at the latest."""
        acc = self.sums[name]
        if not self.partitioned:
            acc += sq
            return
        import torch.distributed as dist

        pad = acc.numel() * self.world - sq.numel()
        if pad:
            sq = torch.cat([sq, sq.new_zeros(pad)])
        part = torch.empty_like(acc)
        work = dist.reduce_scatter_tensor(part, sq, op=dist.ReduceOp.SUM, async_op=True)
        self._pending.append((work, part, name, sq))
        while len(self._pending) > self.IN_FLIGHT:
            self._land()

    def _land(self) -> None:
        work, part, name, _ = self._pending.popleft()
        work.wait()
        self.sums[name] += part

    def flush(self) -> None:
        """Wait for every reduce-scatter in flight and add it in: before the sums are read or saved."""
        while self._pending:
            self._land()

    def _hook(self, p) -> None:
        sq = p.grad.detach().float().pow(2).reshape(-1) * self.scale  # scale 0 = padding sample
        p.grad = None  # one full gradient alive at a time
        self.add(self._names[id(p)], sq)

    def __enter__(self):
        for p in self.hooked.values():
            p.requires_grad_(True)  # frozen base weights need grads only for the per-sample path
            self._handles.append(p.register_post_accumulate_grad_hook(self._hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for p in self.hooked.values():
            p.requires_grad_(False)
            p.grad = None
        self._handles = []


def _padded(batch: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of a right-padded batch."""
    width = max(len(s) for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    for i, s in enumerate(batch):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long, device=device)
        mask[i, :len(s)] = 1
    return ids, mask


def _per_sample_losses(forward, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE per sample over its own (non-pad) tokens, from one padded forward."""
    logits = forward(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    ce = F_.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    m = mask[:, 1:].float()
    return (ce * m).sum(1) / m.sum(1)


PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def precision_of(params: dict) -> str:
    """fp32 or bf16: the dtype every covered weight has (what the forward and backward run in)."""
    dtypes = {p.dtype for p in params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in PRECISIONS:
        raise E2WMError(f"fisher: the covered weights are {', '.join(sorted(map(str, dtypes)))}; the Fisher runs "
                        f"in fp32 or bf16 (--precision)")
    return PRECISIONS[dtypes.pop()]


@contextlib.contextmanager
def _grads_only(model, params, enabled: bool):
    """Under reentrant recompute (no backward `inputs=`): only `params` of the model require grad inside."""
    if not enabled:
        yield
        return
    saved = [(p, p.requires_grad) for p in model.parameters()]
    keep = {id(p) for p in params}
    for p, _ in saved:
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p, was in saved:
            p.requires_grad_(was)


def _backward(loss: torch.Tensor, inputs: list, recompute: bool, retain: bool = False) -> None:
    """Backward to `inputs` only; under recompute, to whatever requires grad (`_grads_only` narrows it)."""
    if recompute:
        loss.backward(retain_graph=retain)
    else:
        torch.autograd.backward(loss, inputs=inputs, retain_graph=retain)


# ---------------------------------------------------------------- main loop

METHODS = ("batch", "loop")


def _accumulate(forward, model, params: dict, local: list[list[int]], length: int, micro_batch: int, device, *,
                partitioned: bool, world: int, method: str, ckpt: Checkpoints | None, stop_after: int | None,
                recompute: bool = False):
    """Walk positions 0..length of this rank's samples, micro_batch at a time. Every rank walks the
    same `length`, padding with zero-weight samples, so the ZeRO-3 collectives line up.

    method "batch": linear weights get their squares from one forward and one backward per
    micro-batch (`e2wm.train.per_sample`); any other covered parameter, and every one under
    "loop", gets one backward per sample."""
    from e2wm.train.per_sample import EmbeddingLeaf, LinearSquares, split_linear

    if method not in METHODS:
        raise E2WMError(f"fisher: method={method!r}: must be one of {', '.join(METHODS)}")
    linear, looped = split_linear(model, params) if method == "batch" else ({}, params)
    acc = _SquareSum(params, partitioned, world, device, hooked=looped)
    pos, samples, tokens = 0, 0, 0
    got = ckpt and ckpt.load(device, acc.sums)
    if got:
        pos, samples, tokens, sums = got
        acc.sums = {n: sums[n].clone() for n in acc.sums}
    filler = local[0] if local else [1, 2]  # any 2-token sample; its gradient is scaled to 0
    with acc, LinearSquares(linear, acc.add) as lin, EmbeddingLeaf(model) as leaf, Recompute(model, recompute):
        leaf.grad_out = recompute   # the loop path's gradients must reach into the recomputed layers
        while pos < length:
            real = local[pos:pos + micro_batch]
            batch = real + [filler] * (micro_batch - len(real))
            weight = torch.tensor([1.0] * len(real) + [0.0] * (len(batch) - len(real)), device=device)
            if linear:   # one forward, one backward (to the embeddings' output) for the whole batch
                ids, mask = _padded(batch, device)
                lin.start(mask)
                leaf.armed = True
                with _grads_only(model, [], recompute):
                    losses = _per_sample_losses(forward, ids, mask)
                    _backward((losses * weight).sum(), [leaf.take()], recompute)
                lin.stop()
            if looped:
                # ZeRO-3 releases gathered params after a backward, and a recomputed layer's graph is not
                # kept, so a shared graph cannot be re-walked: there each sample gets its own forward;
                # otherwise one padded forward serves the batch
                groups = [[s] for s in batch] if partitioned or recompute else [batch]
                i = 0
                for group in groups:
                    with _grads_only(model, looped.values(), recompute):
                        losses = _per_sample_losses(forward, *_padded(group, device))
                        for j, loss in enumerate(losses):
                            acc.scale = weight[i].item()
                            _backward(loss, list(looped.values()), recompute, retain=j < len(losses) - 1)
                            i += 1
            acc.flush()   # this micro-batch's reduce-scatters have all landed
            samples += len(real)
            tokens += sum(len(s) - 1 for s in real)
            before, pos = pos, min(pos + micro_batch, length)
            if ckpt and ckpt.due(before, pos, length):
                ckpt.save(pos, samples, tokens, acc.sums)
            if stop_after is not None and pos * world >= stop_after and pos < length:
                raise FisherInterrupted(f"stopped at position {pos} (stop_after={stop_after})")
    return acc.sums, samples, tokens


def _finished(n: int, bad: str | None) -> None:
    """A result may be written only if it counts samples and no tensor (`bad`) holds NaN or Infinity."""
    if n <= 0:
        raise E2WMError("fisher: 0 samples were processed; nothing written")
    if bad is not None:
        raise E2WMError(f"fisher: {bad} holds NaN or Infinity (overflow?); nothing written, "
                        f"an earlier {FISHER_FILE} is kept")


def _start(model, texts: list[str], tokenizer, max_length: int, modules: str, model_name: str, zero_stage,
           world: int, method: str):
    """(token sequences, covered parameters, metadata) of a run; the model put in eval mode."""
    seqs = [s for s in encode(tokenizer, texts, max_length) if len(s) >= 2]
    params = select_base_params(model, modules)
    model.eval()  # no dropout: per-sample gradients must be deterministic
    return seqs, params, metadata(model_name, texts, modules, max_length, zero_stage, world, method,
                                  precision_of(params))


def _how(meta: dict, load: str, recompute: bool) -> None:
    """Record how the run held its model; neither changes F, so neither is in a checkpoint's fingerprint."""
    meta.update(load=load, gradient_checkpointing=json.dumps(bool(recompute)))


def compute_fisher(model, texts: list[str], tokenizer, *, max_length: int = 256, micro_batch: int = 1,
                   modules: str = "lora-targets", method: str = "batch", out_dir=None, checkpoint_every: int = 0,
                   stop_after: int | None = None, model_name: str = "model", gradient_checkpointing: bool = False):
    """Single-process Fisher on the model's device, in the dtype of its weights (fp32 or bf16); returns
    ({base name: F}, metadata). Saves to out_dir."""
    seqs, params, meta = _start(model, texts, tokenizer, max_length, modules, model_name, "none", 1, method)
    if not seqs:
        raise E2WMError("no sample has 2 or more tokens; nothing to predict")
    ckpt = Checkpoints(out_dir, checkpoint_every, 0, 1, fingerprint(meta, params)) \
        if out_dir is not None and checkpoint_every else None
    _how(meta, "full", gradient_checkpointing)
    sums, n, tok = _accumulate(model, model, params, seqs, len(seqs), micro_batch, next(model.parameters()).device,
                               partitioned=False, world=1, method=method, ckpt=ckpt, stop_after=stop_after,
                               recompute=gradient_checkpointing)
    _finished(n, None)
    fisher = {k: (sums[k] / n).view(p.shape) for k, p in params.items()}
    _finished(n, all_finite(fisher))
    meta.update(samples=n, tokens=tok, weight_sums=json.dumps(weight_sums(params)))
    if out_dir is not None:
        save_fisher(out_dir, fisher, meta)
    return fisher, {k: str(v) for k, v in meta.items()}


def compute_fisher_deepspeed(engine, texts: list[str], tokenizer, *, zero_stage: int, max_length: int = 256,
                             micro_batch: int = 1, modules: str = "lora-targets", method: str = "batch", out_dir=None,
                             checkpoint_every: int = 0, stop_after: int | None = None,
                             model_name: str = "model", consolidate: bool = True,
                             gradient_checkpointing: bool = False, load: str = "full"):
    """Fisher inside an initialised DeepSpeed engine; rank r uses texts[r::world]. `load` records how the
    model was loaded: "partitioned" (each rank read only its ZeRO-3 partition) or "full".

    Returns (tensors, metadata): under ZeRO-0/2 the full F on every rank; under ZeRO-3 this
    rank's flat partitions (the consolidated file, if written, is assembled on rank 0).
    """
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    device = engine.device
    seqs, params, meta = _start(engine.module, texts, tokenizer, max_length, modules, model_name, zero_stage, world,
                                method)
    partitioned = zero_stage == 3
    ckpt = Checkpoints(out_dir, checkpoint_every, rank, world, fingerprint(meta, params), dist.barrier) \
        if out_dir is not None and checkpoint_every else None
    _how(meta, load, gradient_checkpointing)
    # replicated params: call the bare module, since the engine's forward insists on engine.backward()
    sums, n, tok = _accumulate(engine if partitioned else engine.module, engine.module, params, seqs[rank::world],
                               math.ceil(len(seqs) / world), micro_batch, device, partitioned=partitioned,
                               world=world, method=method, ckpt=ckpt, stop_after=stop_after,
                               recompute=gradient_checkpointing)
    counts = torch.tensor([n, tok], dtype=torch.float64, device=device)
    dist.all_reduce(counts)
    n, tok = int(counts[0]), int(counts[1])
    meta.update(samples=n, tokens=tok, weight_sums=json.dumps(weight_sums(params)))
    smeta = {k: str(v) for k, v in meta.items()}
    if not partitioned:  # replicated params: sum every rank's squares once, at the end
        for v in sums.values():
            dist.all_reduce(v)
        fisher = {k: (sums[k] / max(n, 1)).view(p.shape) for k, p in params.items()}
        _finished(n, all_finite(fisher))   # every rank holds the same F, so every rank stops alike
        if out_dir is not None and rank == 0:
            save_fisher(out_dir, fisher, meta)
        dist.barrier()
        return fisher, smeta
    part = {k: v / max(n, 1) for k, v in sums.items()}
    bad = torch.tensor([float(all_finite(part) is not None)], device=device)
    dist.all_reduce(bad)   # every rank must stop alike, or the others would wait in a collective
    _finished(n, "a ZeRO-3 partition" if bad.item() else None)
    shapes = {k: list(p.ds_shape) for k, p in params.items()}
    if out_dir is not None:
        save_fisher(out_dir, part, {**meta, "rank": rank, "shapes": json.dumps(shapes)}, shard_name(rank, world))
        if consolidate:
            full = {}
            for k, v in part.items():  # gather one tensor at a time: rank 0 peaks at |F| + one tensor
                buf = torch.empty(v.numel() * world, dtype=v.dtype, device=device)
                dist.all_gather_into_tensor(buf, v)
                if rank == 0:
                    full[k] = buf[:math.prod(shapes[k])].view(shapes[k]).cpu()
            if rank == 0:
                save_fisher(out_dir, full, meta)
        dist.barrier()
    return part, smeta


if __name__ == "__main__":   # the stage moved: an old command line must not end quietly with nothing written
    import sys
    print("e2wm: error: e2wm.train.fisher holds the Fisher's math; run the stage as `python -m "
          "e2wm.train.fisher_run ARGS` (what `e2wm fisher ARGS` runs)", file=sys.stderr)
    sys.exit(2)
