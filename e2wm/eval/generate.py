"""Generation in batches: prompts (ids by `prompt_ids`) sorted by length into batches of `batch`, left-padded
(position ids from the attention mask), and decoded by `e2wm.eval.beam` over the model's forward and KV cache:
greedy, or beam search exactly as transformers' `generate` runs it. Each item stops at its first token whose
text holds a newline (or EOS) and leaves the batch then; only the first line is kept, so greedy first lines
equal those of decoding on. A model whose generation config asks for more (a repetition penalty, a length
penalty, ...) is decoded by `generate` itself. Prompt + new tokens are bounded by the model's positions: a
longer prompt keeps its last tokens."""
from __future__ import annotations

from functools import lru_cache

import torch

from e2wm.errors import E2WMError
from e2wm.eval.beam import beam_search, greedy, plain
from e2wm.eval.metrics import first_line
from e2wm.eval.placement import input_device
from e2wm.train.model import max_positions
from e2wm.train.tokens import prompt_ids


@lru_cache(maxsize=8)
def end_ids(tok) -> frozenset[int]:
    """EOS and every id whose text holds a newline (once per tokenizer)."""
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    return frozenset([i for i, t in enumerate(texts) if "\n" in t] + [tok.eos_token_id])


def bounded(model, tok, prompt: str, max_new_tokens: int) -> tuple[list[int], bool]:
    """The prompt's ids, its last ones only where prompt + `max_new_tokens` exceed the model's positions,
    and whether it was cut."""
    limit = max_positions(model)
    ids = prompt_ids(tok, prompt)
    if not limit:
        return ids, False
    if max_new_tokens >= limit:
        raise E2WMError(f"--max-new-tokens {max_new_tokens}: the model holds {limit} positions, prompt included; "
                        f"lower it")
    return ids[-(limit - max_new_tokens):], len(ids) + max_new_tokens > limit


def plan(model, tok, prompts: list[str], batch: int, max_new_tokens: int) -> list[list[int]]:
    """The batches (lists of prompt indices) `generate` decodes `prompts` in: by bounded length (ties in input
    order), `batch` at a time; one at a time, input order. Ranks deal these out (`generate(groups=...)`), so
    each batch is the one a single process would decode."""
    return _plan([len(bounded(model, tok, p, max_new_tokens)[0]) for p in prompts], batch)


def _plan(lengths: list[int], batch: int) -> list[list[int]]:
    order = list(range(len(lengths)))
    if batch > 1:   # prompts of like length together: less padding
        order.sort(key=lambda i: lengths[i])
    return [order[k:k + batch] for k in range(0, len(order), batch)]


def generate(model, tok, prompts: list[str], num_beams: int, max_new_tokens: int, batch: int = 16,
             newline: bool = True, groups: list[list[int]] | None = None) -> list[tuple[str, bool] | None]:
    """(first line of the continuation, prompt cut) of each prompt, in input order, decoded `batch` prompts at a
    time (`plan`'s batches; `groups`: only these of them, the other entries None); each ends at its first
    newline, or (`newline` False, E2WM's way) only at EOS or `max_new_tokens`. Greedy for `num_beams` 1, else
    beam search; the same text as transformers' `generate` on each prompt alone."""
    ends = end_ids(tok) if newline else frozenset([tok.eos_token_id])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    items = [bounded(model, tok, p, max_new_tokens) for p in prompts]
    fast = plain(model)
    out: list = [None] * len(items)
    for part in _plan([len(ids) for ids, _ in items], batch) if groups is None else groups:
        ids = [items[i][0] for i in part]
        if not fast:
            rows = _generate(model, ids, num_beams, max_new_tokens, pad, ends)
        elif num_beams == 1:
            rows = greedy(model, ids, max_new_tokens, pad, ends)
        else:
            rows = beam_search(model, ids, num_beams, max_new_tokens, pad, ends)
        for i, row in zip(part, rows):   # up to its first end token
            row = row[:next((j + 1 for j, t in enumerate(row) if t in ends), len(row))]
            out[i] = (first_line(tok.decode(row, skip_special_tokens=True)), items[i][1])
    return out


@torch.no_grad()
def _generate(model, part: list[list[int]], num_beams: int, max_new_tokens: int, pad: int,
              ends: frozenset[int]) -> list[list[int]]:
    """transformers' `generate` over one left-padded batch: each row's new ids (padding after its end)."""
    device = input_device(model)
    n = max(map(len, part))
    x = torch.tensor([[pad] * (n - len(p)) + p for p in part], device=device)
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in part], device=device)
    y = model.generate(input_ids=x, attention_mask=mask, num_beams=num_beams, do_sample=False,
                       max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=sorted(ends))
    return y[:, n:].tolist()
