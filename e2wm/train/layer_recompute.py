"""Gradient checkpointing of a model's decoder layers that holds in eval mode (the Fisher's).

transformers checkpoints a layer only while the model is in training mode, and the Fisher runs in eval
mode (no dropout). `Recompute(model)` instead wraps each decoder layer's `forward` (the layers transformers
marks checkpointable) in torch's reentrant checkpoint while a forward records gradients: the layer runs
without saving activations, and backward runs it again. The layer's own module hooks (ZeRO-3's gathers)
stay outside the wrapper, its submodules' run in the recompute too, as under training's checkpointing.

Reentrant checkpointing rules a caller must keep: a backward must not pass `inputs=` (nor use
`autograd.grad`), and gradients reach a layer's parameters only if its input requires grad.
"""
from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint

from e2wm.errors import E2WMError


def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's checkpointable decoder layers (transformers' GradientCheckpointingLayer), outermost only."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    found = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    inner = {id(c) for m in found for c in m.modules() if c is not m}
    return [m for m in found if id(m) not in inner]


class Recompute:
    """`with Recompute(model):` every decoder layer's activations are recomputed in backward."""

    def __init__(self, model, enabled: bool = True):
        self.layers = decoder_layers(model) if enabled else []
        if enabled and not self.layers:
            raise E2WMError(f"gradient_checkpointing: {type(model).__name__} has no decoder layer that "
                            f"transformers can checkpoint")

    @staticmethod
    def _wrapped(forward, *args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        if any(torch.is_tensor(v) and v.requires_grad for v in kwargs.values()):   # reentrant: no grads through kwargs
            raise E2WMError("gradient_checkpointing: a decoder layer got a tensor that needs gradients as a keyword "
                            "argument, which reentrant checkpointing would cut off")
        return checkpoint(functools.partial(forward, **kwargs), *args, use_reentrant=True)

    def __enter__(self):
        for layer in self.layers:   # an instance attribute shadows the class's forward; removed on exit
            layer.forward = functools.partial(self._wrapped, layer.forward)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            del layer.forward
