"""The prompt pass of a batch of prompts of different lengths, shared by generation and multiple choice: a
key/value cache left-padded to the longest prompt (position ids counted from the attention mask, as
transformers does for left padding) and each prompt's last logits.

Where the longest prompt is long against the model's width (`grouping_length`: 12 hidden sizes), prompts of
one length run together with no attention mask, so attention takes its causal fast path (on a CPU, SDPA over
a 1,800-token prompt is about 3x faster causal than under a padding mask, which must score every key); their
caches are then placed right-aligned in zero-filled buffers. The pads' keys are never read: the returned
mask hides them from every later step. Caches whose layers are not plain `DynamicLayer`s
(sliding windows, offloading, ...) are made by one padded pass under the mask instead."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicLayer

from e2wm.eval.placement import input_device


@dataclass
class Prefilled:
    cache: object                    # the model's cache, one row per prompt, left-padded to `width`
    last: torch.Tensor               # [prompts, vocab]: the logits after each prompt's last token
    mask: torch.Tensor | None        # [prompts, width]: 1 on real tokens; None where no prompt is padded
    width: int                       # the longest prompt


def cache_of(out):
    """A model output's cache (transformers 5 renamed `past_key_values` to `cache`)."""
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)


def base_model(model):
    """A PEFT model's base model; any other model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _keep_last(model) -> dict:
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base_model(model).forward).parameters else {}


def _plain(cache) -> bool:
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(x) is DynamicLayer and isinstance(getattr(x, "keys", None), torch.Tensor)
                                for x in layers)


def _plain_layers(model) -> bool:
    """Whether the model's cache, by its config, holds only plain `DynamicLayer`s."""
    from transformers import DynamicCache
    try:
        layers = DynamicCache(config=base_model(model).config).layers
    except Exception:   # a config transformers cannot read layer types from: the padded pass
        return False
    return all(type(x) is DynamicLayer for x in layers)


def padded(prompts: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, position ids) of the prompts left-padded to the longest: transformers' position ids for
    left padding (counted from the mask, 0 on pads)."""
    n = max(map(len, prompts))
    ids = torch.tensor([[pad] * (n - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask, (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


# prompts of one length run apart from a longest prompt of GROUPED_FROM hidden sizes: a padding mask makes
# attention score every key, about 2·L·d extra flops a token against the ~24·d² of the layer's matmuls, so it
# only pays to avoid where L approaches 12·d (measured on one CPU core: a Llama of hidden 32 with 1,800-token
# prompts runs its prompt passes ~2x faster apart; one of hidden 256 with 650-token prompts ~1.6x slower)
GROUPED_FROM = 12


def grouping_length(model) -> int:
    """The longest-prompt length from which `prefill` runs prompts of one length apart, for this model."""
    return GROUPED_FROM * int(getattr(base_model(model).config, "hidden_size", 0) or 0)


@torch.no_grad()
def prefill(model, prompts: list[list[int]], pad: int, grouped_from: int | None = None) -> Prefilled:
    """Run the prompts through the model; see the module's docstring. An empty prompt (multiple choice's
    option with no shared prefix) is all pads, its logits zeros; the longest must not be empty."""
    device, extra = input_device(model), _keep_last(model)
    width = max(map(len, prompts))
    ids, mask, pos = padded(prompts, pad, device)
    least = grouping_length(model) if grouped_from is None else grouped_from
    if all(len(p) == width for p in prompts) or width < least or not _plain_layers(model):
        out = model(input_ids=ids, attention_mask=None if mask.all() else mask, position_ids=pos, use_cache=True,
                    **extra)
        return Prefilled(cache_of(out), out.logits[:, -1], None if mask.all() else mask, width)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    cache, last = None, None
    for length, rows in sorted(by_length.items(), reverse=True):   # the longest first: its cache is the frame
        if length == 0:   # nothing to run: pads only, and logits that nothing reads
            last[torch.tensor(rows, device=device)] = 0
            continue
        x = torch.tensor([prompts[i] for i in rows], device=device)
        out = model(input_ids=x, position_ids=torch.arange(length, device=device).expand(len(rows), -1),
                    use_cache=True, **extra)
        part = cache_of(out)
        if cache is None:
            if not _plain(part):
                break   # a cache of another kind after all: to the padded pass below
            cache = part
            bufs = [(x.keys.new_zeros((len(prompts), *x.keys.shape[1:])),
                     x.values.new_zeros((len(prompts), *x.values.shape[1:]))) for x in part.layers]
            last = out.logits.new_empty((len(prompts), out.logits.shape[-1]))
        at = torch.tensor(rows, device=device)
        last[at] = out.logits[:, -1]
        for (kb, vb), layer in zip(bufs, part.layers):
            to = at.to(kb.device)   # a spread model's layers live on different devices
            kb[to, :, width - length:] = layer.keys
            vb[to, :, width - length:] = layer.values
    else:
        for (kb, vb), layer in zip(bufs, cache.layers):
            layer.keys, layer.values = kb, vb
        return Prefilled(cache, last, mask, width)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
    return Prefilled(cache_of(out), out.logits[:, -1], mask, width)
