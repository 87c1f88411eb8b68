"""`e2wm bench memory`: GPU memory per rank of the Fisher and training stages, measured on real layers.

The model's shape is built with 1, 2 and 3 decoder layers (embeddings, final norm and head included),
by default on the meta device (shapes and dtypes without data, so a 13B layer at micro-batch 8 x 800
tokens costs nothing; `--device accelerator` runs real tensors instead, and the counts agree). Each
forward runs the stage's own code under `torch.autograd.graph.saved_tensors_hooks`; every distinct
storage saved for backward is counted once at its full size, by dtype (parameters are left out):

* train: the LoRA model (cast to the precision, as DeepSpeed's bf16 engine does), the logits held to
  the backward and `weighted_token_loss` with every position an answer token (an upper bound); the
  ZeRO-2 EWC-LoRA penalty (`EWCLoRA`, all pairs before one backward: what its nodes keep) is measured on its own.
* fisher: `e2wm.train.fisher._per_sample_losses` with the input embeddings' output made a leaf and
  `e2wm.train.per_sample.LinearSquares` hooks armed, whose kept layer inputs are counted too.

One layer is the 2-layer figure minus the 1-layer figure; the rest of the 1-layer figure is what lies
outside the layers (less what the first layer does not save when its input needs no gradient), so L
layers hold rest + L x layer; the 3-layer forward checks this. With gradient checkpointing (reentrant,
as the trainer enables it) each layer keeps its input, and the backward's recompute of one layer adds
that layer's full figure (for the Fisher with the inputs its per-sample hooks keep). Rows are full (no
padding), so no attention mask is built. On the meta device scaled-dot-product attention runs as the
fused kernel a GPU picks (saving q, k, v, the output and the log-sum-exp), not the math path.

Weights, LoRA state and Fisher tensors per rank follow from the parameter counts of the layers built
and ZeRO's partitioning over `world` ranks; the Fisher's per-sample working set (`LinearSquares`'
backward hook on the largest covered weight) is measured as the peak of the storages it allocates.
"""
from __future__ import annotations

import copy
import warnings
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from e2wm.errors import E2WMError
from e2wm.files import dumps

GIB = 2 ** 30
STAGES = ("train", "fisher")


def _key(t: torch.Tensor) -> int:
    return StorageWeakRef(t.untyped_storage()).cdata


class Saved:
    """Distinct storages that autograd saves for backward (or that code keeps, via `keep`), with their
    bytes by dtype; storages of `model`'s parameters and buffers are not counted."""

    def __init__(self, model=None):
        self.skip = {_key(t) for t in (*model.parameters(), *model.buffers())} if model is not None else set()
        self.by_dtype: dict[str, int] = {}
        self._seen: set[int] = set()
        self._refs: list[torch.Tensor] = []   # held, so no storage is freed and its key reused while counting
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def keep(self, t: torch.Tensor) -> None:
        k = _key(t)
        if k in self.skip or k in self._seen:
            return
        self._seen.add(k)
        self._refs.append(t)
        name = str(t.dtype).removeprefix("torch.")
        self.by_dtype[name] = self.by_dtype.get(name, 0) + t.untyped_storage().nbytes()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.keep(t)
        return t

    @property
    def total(self) -> int:
        return sum(self.by_dtype.values())

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


class Peak(TorchDispatchMode):
    """The peak bytes of the storages allocated by the ops run inside (views of inputs not counted)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        out = func(*args, **(kwargs or {}))
        inputs = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and _key(t) not in inputs and _key(t) not in self.live:
                s = t.untyped_storage()
                self.live[_key(t)] = (StorageWeakRef(s), s.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


class MetaKernels(TorchFunctionMode):
    """On the meta device: scaled_dot_product_attention without a mask runs as the fused (flash) kernel,
    which saves what a GPU's fused kernels save; bincount (no meta kernel; its counts are detached and
    saved by nothing) gives zeros; a whole-tensor all() / any(), which models test in Python (is a mask all
    ones, are rows packed), is True / False as for full, unpacked rows (a CPU scalar, so `if` can read it).
    Elsewhere all of these run unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        meta = bool(args) and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta"
        if meta and func is torch.bincount:
            return torch.zeros(kwargs.get("minlength", 0), dtype=torch.long, device=args[0].device)
        whole = len(args) == 1 and not kwargs
        if meta and whole and func in (torch.all, torch.Tensor.all, torch.any, torch.Tensor.any):
            return torch.tensor(func in (torch.all, torch.Tensor.all), device="cpu")
        if not meta or func is not F.scaled_dot_product_attention or kwargs.get("attn_mask") is not None:
            return func(*args, **kwargs)
        q, k, v = args[:3]
        if k.shape[-3] != q.shape[-3]:   # grouped-query attention: the kernel takes whole heads
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, kwargs.get("dropout_p", 0.0), kwargs.get("is_causal", False), scale=kwargs.get("scale"))[0]


# ---------------------------------------------------------------- the model and its two forwards

def with_layers(config, n: int):
    """A copy of `config` with `n` decoder layers (the first `n` of a per-layer pattern, if it has one)."""
    c = copy.deepcopy(config)
    c.num_hidden_layers = n
    for attr in ("attention_layers", "layer_types"):   # GPT-Neo's global/local pattern, newer models' types
        if isinstance(getattr(c, attr, None), list):
            setattr(c, attr, getattr(c, attr)[:n])
    return c


def build(config, layers: int, dtype: torch.dtype, device, checkpointing: bool):
    """The PeftModel the stages run (LoRA on the default targets, cast to `dtype`) with `layers` layers."""
    from transformers import AutoModelForCausalLM

    from e2wm.train.model import add_lora

    with torch.device(device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`gradient_checkpointing_enable` is deprecated", FutureWarning)
        base = AutoModelForCausalLM.from_config(with_layers(config, layers), dtype=dtype)
        if checkpointing:   # as the trainer enables it
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            base.config.use_cache = False
            base.enable_input_require_grads()
        return add_lora(base).to(dtype)


def _train_forward(model, ids: torch.Tensor, rec: Saved) -> None:
    from e2wm.train.objective import weighted_token_loss

    model.train()
    logits = model(input_ids=ids).logits
    rec.keep(logits)   # the trainer holds them until its backward
    batch = {"input_ids": ids, "weights": torch.ones(ids.shape, device=ids.device),
             "tasks": torch.zeros(ids.shape, dtype=torch.long, device=ids.device)}
    weighted_token_loss(logits, batch, 1)


def _fisher_forward(model, ids: torch.Tensor, rec: Saved, checkpointing: bool) -> None:
    from e2wm.train.fisher import _per_sample_losses, select_base_params
    from e2wm.train.per_sample import EmbeddingLeaf, LinearSquares, split_linear

    class Kept(LinearSquares):   # counts the layer inputs its hooks hold until the backward
        def _forward(self, module, inputs, output):
            super()._forward(module, inputs, output)
            rec.keep(inputs[0])

    from e2wm.train.layer_recompute import Recompute

    model.eval()   # as the Fisher runs: eval mode, its own per-layer recompute (not transformers', train-only)
    linear, _ = split_linear(model, select_base_params(model))
    mask = torch.ones(ids.shape, dtype=torch.long, device=ids.device)
    with ExitStack() as stack:
        if checkpointing:
            stack.enter_context(Recompute(model))
        leaf = stack.enter_context(EmbeddingLeaf(model))
        leaf.armed = True
        if not checkpointing:   # with checkpointing the hooks serve the recompute, counted per layer
            stack.enter_context(Kept(linear, lambda name, sq: None)).start(mask)
        _per_sample_losses(lambda attention_mask=None, **kw: model(**kw), ids, mask)   # full rows: no mask


def saved_bytes(model, stage: str, ids: torch.Tensor, checkpointing: bool) -> Saved:
    """What one forward of `stage` saves for its backward."""
    import torch.fx.experimental._config as fx_config

    rec = Saved(model)
    # every position is an answer token, so on meta the answer mask's nonzero may assume all are nonzero
    with MetaKernels(), fx_config.patch(meta_nonzero_assume_all_nonzero=True), rec:
        if stage == "train":
            _train_forward(model, ids, rec)
        else:
            _fisher_forward(model, ids, rec, checkpointing)
    return rec


def penalty_bytes(model, dtype: torch.dtype, device) -> Saved:
    """What the replicated (ZeRO-0/1/2) EWC-LoRA penalty saves for its backward, with fp32 Fisher tensors."""
    from e2wm.train.model import lora_pairs
    from e2wm.train.regularizers import EWCLoRA

    fisher = {name: torch.zeros(B.shape[0], A.shape[1], dtype=torch.float32, device=device)
              for name, A, B, _ in lora_pairs(model)}
    rec = Saved(model)
    for f in fisher.values():
        rec.skip.add(_key(f))   # counted as the Fisher tensors, not as saved activations
    with rec:
        EWCLoRA(model, fisher)()
    return rec


def squares_working_set(model, micro_batch: int, seq: int, dtype: torch.dtype, device) -> tuple[int, int]:
    """(peak bytes that `LinearSquares`' backward hook allocates for the largest covered weight of one
    micro-batch, that weight's elements)."""
    from e2wm.train.fisher import select_base_params
    from e2wm.train.per_sample import LinearSquares, split_linear

    linear, _ = split_linear(model, select_base_params(model))
    module = max((mod for mod, _ in linear.values()), key=lambda mod: mod.weight.numel())
    out, inn = module.weight.shape if isinstance(module, torch.nn.Linear) else module.weight.shape[::-1]
    hooks = LinearSquares(linear, lambda name, sq: None)
    hooks.mask = torch.ones(micro_batch, seq, dtype=torch.long, device=device)
    x = torch.zeros(micro_batch, seq, inn, dtype=dtype, device=device)
    g = torch.zeros(micro_batch, seq, out, dtype=dtype, device=device)
    with Peak() as peak:
        hooks._backward(module, x, g)
    return peak.peak, out * inn


def param_counts(model) -> dict[str, int]:
    """Base parameters, trainable (LoRA) parameters and Fisher-covered elements of `model`."""
    from e2wm.train.fisher import select_base_params

    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"base": base, "lora": lora, "covered": sum(p.numel() for p in select_base_params(model).values())}


# ---------------------------------------------------------------- measuring and extrapolating

SIZES = (1, 2, 3)   # layers built: 1 and 2 give the split, 3 checks that it extrapolates


def _split(one: dict, two: dict) -> tuple[dict, dict]:
    """(per layer, outside the layers) by key, from figures of 1 and 2 layers."""
    keys = set(one) | set(two)
    layer = {k: two.get(k, 0) - one.get(k, 0) for k in keys}
    return layer, {k: one.get(k, 0) - layer[k] for k in keys}


def measure(config, micro_batch: int, seq: int, dtype: torch.dtype, device) -> dict:
    """{(what, checkpointing): {"layer", "outside" (by dtype or count), "miss_at_3" (bytes by which 3
    layers measured differ from 3 layers extrapolated)}} for what in train, fisher, penalty, params, and
    "squares": (working-set bytes, elements of that weight)."""
    ids = torch.zeros(micro_batch, seq, dtype=torch.long, device=device)
    m: dict = {}
    for ckpt in (False, True):
        runs = {}
        for n in SIZES:
            model = build(config, n, dtype, device, ckpt)
            runs[n] = {stage: saved_bytes(model, stage, ids, ckpt).by_dtype for stage in STAGES}
            if not ckpt:
                runs[n]["penalty"] = penalty_bytes(model, dtype, device).by_dtype
                runs[n]["params"] = param_counts(model)
                if n == 1:
                    m["squares"] = squares_working_set(model, micro_batch, seq, dtype, device)
            del model
        for what in runs[1]:
            layer, outside = _split(runs[1][what], runs[2][what])
            miss = sum(runs[3][what].values()) - sum(outside.values()) - 3 * sum(layer.values())
            m[(what, ckpt)] = {"layer": layer, "outside": outside, "miss_at_3": miss}
    return m


def estimate(model_spec: str, micro_batch: int = 8, seq: int = 800, world: int = 8, layers: int | None = None,
             precision: str = "bf16", device: str = "meta") -> dict:
    """The figures `e2wm bench memory` prints: bytes measured, and bytes per GPU by stage, checkpointing
    and ZeRO stage for `layers` (default: the model's) layers on `world` ranks."""
    from e2wm.train.model import DTYPES, check_model_spec, model_config

    check_model_spec(model_spec, "--model")
    if precision not in DTYPES:
        raise E2WMError(f"--precision: {precision!r} is not one of {', '.join(DTYPES)}")
    if device not in ("meta", "accelerator"):
        raise E2WMError(f"--device: {device!r} is not meta or accelerator")
    config = model_config(model_spec, field="--model")
    top = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if top and seq > top:
        raise E2WMError(f"--seq: {seq} tokens is more than {model_spec} holds ({top} positions)")
    L, W = layers or config.num_hidden_layers, world
    dtype = DTYPES[precision]
    dev = torch.device("meta") if device == "meta" else _accelerator_device()
    m = measure(config, micro_batch, seq, dtype, dev)
    wb = dtype.itemsize   # bytes per weight
    pl, po = m[("params", False)]["layer"], m[("params", False)]["outside"]
    n = {k: po[k] + L * pl[k] for k in pl}   # base, lora, covered of L layers
    weights, lora = wb * (n["base"] + n["lora"]), n["lora"]
    penalty = m[("penalty", False)]
    squares, largest = m["squares"]
    static = {   # bytes per rank that are not activations, by (stage, ZeRO stage)
        ("train", 2): {"weights": weights, "lora_state": wb * lora + 16 * lora / W, "fisher": 4 * n["covered"],
                       "penalty": sum(penalty["outside"].values()) + L * sum(penalty["layer"].values())},
        ("train", 3): {"weights": weights / W, "gathered": 2 * wb * pl["base"], "lora_state": (wb + 16) * lora / W,
                       "fisher": 4 * n["covered"] / W},
        ("fisher", 2): {"weights": weights, "fisher": 4 * n["covered"], "squares": squares},
        ("fisher", 3): {"weights": weights / W, "gathered": 2 * wb * pl["base"], "fisher": 4 * n["covered"] / W,
                        "squares": squares + 4 * largest},
    }
    rows = []
    for stage in STAGES:
        for ckpt in (False, True):
            mm = m[(stage, ckpt)]
            layer, outside = sum(mm["layer"].values()), sum(mm["outside"].values())
            recompute = sum(m[(stage, False)]["layer"].values()) if ckpt else 0
            act = outside + L * layer + recompute
            rows.append({"stage": stage, "checkpointing": ckpt, "layer_bytes": layer, "layer_by_dtype": mm["layer"],
                         "outside_bytes": outside, "recompute_bytes": recompute, "activations_bytes": act,
                         "miss_at_3_layers_bytes": mm["miss_at_3"],
                         **{f"zero{z}_gib": (act + sum(static[(stage, z)].values())) / GIB for z in (2, 3)}})
    return {"bench": "memory", "model": model_spec, "layers": L, "micro_batch": micro_batch, "seq": seq,
            "precision": precision, "world": W, "device": str(dev), "params": n, "params_per_layer": pl,
            "params_outside_layers": po, "rows": rows,
            "static_bytes": {f"{s}/zero{z}": v for (s, z), v in static.items()}}


def _accelerator_device() -> torch.device:
    from e2wm.train.dist import device
    return device()


# ---------------------------------------------------------------- printing

def _fmt(b: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(b) >= size / 10:
            return f"{b / size:.2f} {unit}"
    return f"{b:.0f} B"


PARTS = {"weights": "base + LoRA weights", "gathered": "2 layers gathered", "lora_state": "LoRA grads + fp32 "
         "master + Adam", "fisher": "Fisher fp32", "penalty": "EWC-LoRA penalty saved", "squares": "per-sample "
         "squares working set"}


def format_table(r: dict) -> list[str]:
    p, L, W = r["params"], r["layers"], r["world"]
    miss = max(abs(row["miss_at_3_layers_bytes"]) for row in r["rows"])
    lines = [
        f"e2wm bench memory: {r['model']}, {L} layers, extrapolated from forwards of 1 and 2 real layers on "
        f"{r['device']} (3 layers measured differ from 3 extrapolated by {_fmt(miss)})",
        f"assumptions: micro-batch {r['micro_batch']} rows x {r['seq']} tokens, no padding, every position a "
        f"loss token; {r['precision']} weights and activations (LoRA cast too); LoRA on the default targets; "
        f"world {W}; Fisher sums fp32; ZeRO-3 holds 2 layers of gathered weights; CUDA context and "
        f"communication buffers (1-2 GiB) not counted",
        f"parameters: {p['base'] / 1e9:.2f} B ({r['params_per_layer']['base'] / 1e6:.1f} M per layer x {L} + "
        f"{r['params_outside_layers']['base'] / 1e6:.1f} M), LoRA {p['lora'] / 1e6:.2f} M, Fisher-covered "
        f"{p['covered'] / 1e9:.3f} G",
        "",
        f"{'stage':<7} {'checkpointing':<13} {'per layer (measured)':>20} {'rest (measured)':>15} "
        f"{'recompute':>10} {'activations, ' + str(L) + ' layers':>19} {'ZeRO-2 GiB/GPU':>15} {'ZeRO-3 GiB/GPU':>15}"]
    for row in r["rows"]:
        lines.append(
            f"{row['stage']:<7} {'on' if row['checkpointing'] else 'off':<13} {_fmt(row['layer_bytes']):>20} "
            f"{_fmt(row['outside_bytes']):>15} {_fmt(row['recompute_bytes']):>10} "
            f"{_fmt(row['activations_bytes']):>19} {row['zero2_gib']:>15.1f} {row['zero3_gib']:>15.1f}")
    lines += ["", "per layer by dtype (checkpointing off): " + "; ".join(
        f"{row['stage']}: " + ", ".join(f"{d} {_fmt(b)}" for d, b in sorted(row["layer_by_dtype"].items()) if b)
        for row in r["rows"] if not row["checkpointing"]),
        "activations = rest + layers x per layer (+ one layer's full figure recomputed, checkpointing on); "
        "GiB/GPU adds:"]
    for key, parts in r["static_bytes"].items():
        lines.append(f"  {key}: " + ", ".join(f"{PARTS[k]} {_fmt(v)}" for k, v in parts.items()))
    return lines


def main(args) -> int:
    r = estimate(args.model, args.micro_batch, args.seq, args.world, args.layers, args.precision, args.device)
    print(*format_table(r), sep="\n")
    if args.json:
        print(dumps(r))
    return 0
