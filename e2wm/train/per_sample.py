"""Squared per-sample gradients of linear layers from one ordinary backward per micro-batch.

For a linear layer y = x Wᵀ (+ b), sample b's weight gradient is G_bᵀ X_b: its output gradients
(tokens x out) times its inputs (tokens x in), summed over its own tokens; the bias gradient is
the sum of G_b over tokens. Both factors are at hand during one backward of Σ_b w_b loss_b, since
no sample's loss depends on another sample's activations (w_b is 0 for filler samples). A forward
hook keeps each covered layer's input, a gradient hook on its output receives G, and
Σ_b (G_bᵀ X_b)² is added into fp32 sums: about one extra weight-gradient matmul per layer. Padding
positions are zeroed in both factors, so they contribute nothing even if a padded row is not finite.

The backward runs to a leaf made of the input embeddings' output, so autograd computes activation
gradients only: no weight gradient of the frozen base model, none of the LoRA weights.

Memory beyond an ordinary LoRA backward: per-sample gradients are formed `chunk` samples at a time,
with chunk = max(1, CHUNK_BYTES // (4 * out * in)), so a layer's working set is at most
max(CHUNK_BYTES, 4 * out * in) bytes plus one fp32 (out x in) sum and its fp32 copies of X and G for
the chunk; the layer inputs are held from forward to backward (under LoRA autograd holds the same
tensors for lora_A anyway). Under gradient checkpointing (`e2wm.train.layer_recompute`) a layer's first,
gradient-free run is not watched; its recompute in backward is, so a layer's input is held only while
that layer's backward runs.

Weights that are not the weight or bias of exactly one linear layer (embeddings, norms, a tied
lm_head) are left to the one-backward-per-sample path (`e2wm.train.fisher`, `--method loop`).
"""
from __future__ import annotations

import functools

import torch

from e2wm.errors import E2WMError

CHUNK_BYTES = 256 << 20


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D   # GPT-2 style: weight (in, out), y = x W + b
    return torch.nn.Linear, Conv1D


def split_linear(model, params: dict) -> tuple[dict, dict]:
    """({name: (module, attr)} of params the hooks can serve, {name: param} of the rest)."""
    owners: dict[int, list] = {}
    for mod in model.modules():
        for attr, p in mod.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append((mod, attr))
    linear, rest = {}, {}
    for name, p in params.items():
        own = owners.get(id(p), [])
        if len(own) == 1 and isinstance(own[0][0], _linear_types()) and own[0][1] in ("weight", "bias"):
            linear[name] = own[0]
        else:
            rest[name] = p
    return linear, rest


class EmbeddingLeaf:
    """A forward hook that turns the input embeddings' output into a leaf requiring grad, so a
    backward to it computes activation gradients only. With `grad_out` (reentrant recompute), an
    unarmed forward's embeddings output is made to require grad, so gradients reach the layers."""

    def __init__(self, model):
        self.module = model.get_input_embeddings()
        self.leaf = None
        self.armed = False
        self.grad_out = False
        self._handle = None

    def _hook(self, module, inputs, output):
        if not self.armed:   # a forward of the per-sample path: leave the graph whole
            if self.grad_out and torch.is_grad_enabled() and not output.requires_grad:
                return output.detach().requires_grad_(True)
            return None
        self.leaf = output.detach().requires_grad_(True)
        return self.leaf

    def __enter__(self):
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        self.leaf = None

    def take(self) -> torch.Tensor:
        leaf, self.leaf, self.armed = self.leaf, None, False
        if leaf is None:
            raise RuntimeError("the forward did not run the input embeddings")
        return leaf


class LinearSquares:
    """Hooks that add Σ_b (per-sample gradient)² of covered linear weights and biases via `add(name, flat)`.

    `mask` (batch x tokens, 1 for real tokens) must be set before each forward.
    """

    def __init__(self, linear: dict, add):
        self.add = add
        self.mask: torch.Tensor | None = None
        self.by_module: dict[torch.nn.Module, list[tuple[str, str]]] = {}
        for name, (mod, attr) in sorted(linear.items()):
            self.by_module.setdefault(mod, []).append((attr, name))
        self._handles: list = []
        self._seen: set[int] = set()
        self.armed = False

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._forward) for m in self.by_module]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def start(self, mask: torch.Tensor) -> None:
        """Before a forward: the batch's token mask. Only that forward is watched."""
        self.mask, self._seen, self.armed = mask, set(), True

    def stop(self) -> None:
        self.armed = False

    def _forward(self, module, inputs, output):
        if not self.armed or not torch.is_grad_enabled():   # no grad: a recomputed layer's first run
            return
        if id(module) in self._seen:
            raise E2WMError(f"fisher: {type(module).__name__} runs twice in one forward (shared weights); "
                            f"per-sample squares need --method loop")
        self._seen.add(id(module))
        if not (torch.is_tensor(output) and output.requires_grad):
            raise RuntimeError("a covered layer's output does not require grad")
        output.register_hook(functools.partial(self._backward, module, inputs[0].detach()))

    def _backward(self, module, x, g):
        keep = self.mask.to(torch.bool).unsqueeze(-1)
        b = keep.shape[0]
        x = torch.where(keep, x.reshape(b, -1, x.shape[-1]), 0)
        g = torch.where(keep, g.reshape(b, -1, g.shape[-1]), 0)
        for attr, name in self.by_module[module]:
            if attr == "bias":
                sq = g.float().sum(1).pow_(2).sum(0)
            else:
                sq = weight_squares(x, g)
                if not isinstance(module, torch.nn.Linear):   # Conv1D keeps its weight as (in, out)
                    sq = sq.t()
            self.add(name, sq.reshape(-1))
        return None


def weight_squares(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Σ_b (g_bᵀ x_b)² for x (B, T, in) and g (B, T, out), fp32, formed `chunk` samples at a time."""
    b, out, inn = x.shape[0], g.shape[-1], x.shape[-1]
    chunk = max(1, CHUNK_BYTES // (4 * out * inn))
    acc = torch.zeros(out, inn, dtype=torch.float32, device=x.device)
    for s in range(0, b, chunk):
        per = torch.bmm(g[s:s + chunk].float().transpose(1, 2), x[s:s + chunk].float())   # (chunk, out, in)
        acc += per.pow_(2).sum(0)
    return acc
