"""Generation in batches: prompts left-padded (ids by `prompt_ids`, transformers' generate derives the
position ids from the attention mask), beam search over the batch, and each item stopped at its first
token whose text holds a newline (or EOS): only the first line is kept, so greedy first lines equal
those of decoding on. Prompt + new tokens are bounded by the model's positions: a longer prompt keeps
its last tokens."""
from __future__ import annotations

from functools import lru_cache

import torch

from e2wm.errors import E2WMError
from e2wm.eval.metrics import first_line
from e2wm.train.tokens import prompt_ids


@lru_cache(maxsize=8)
def end_ids(tok) -> frozenset[int]:
    """EOS and every id whose text holds a newline (once per tokenizer)."""
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    return frozenset([i for i, t in enumerate(texts) if "\n" in t] + [tok.eos_token_id])


def bounded(model, tok, prompt: str, max_new_tokens: int) -> tuple[list[int], bool]:
    """The prompt's ids, its last ones only where prompt + `max_new_tokens` exceed the model's positions,
    and whether it was cut."""
    c = model.config
    limit = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
    ids = prompt_ids(tok, prompt)
    if not limit:
        return ids, False
    if max_new_tokens >= limit:
        raise E2WMError(f"--max-new-tokens {max_new_tokens}: the model holds {limit} positions, prompt included; "
                        f"lower it")
    return ids[-(limit - max_new_tokens):], len(ids) + max_new_tokens > limit


@torch.no_grad()
def generate(model, tok, prompts: list[str], num_beams: int, max_new_tokens: int, batch: int = 16,
             newline: bool = True) -> list[tuple[str, bool]]:
    """(first line of the continuation, prompt cut) of each prompt, decoded `batch` prompts at a time; each
    ends at its first newline, or (`newline` False, E2WM's way) only at EOS or `max_new_tokens`."""
    device = next(model.parameters()).device
    ends = end_ids(tok) if newline else frozenset([tok.eos_token_id])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    items = [bounded(model, tok, p, max_new_tokens) for p in prompts]
    out = []
    for k in range(0, len(items), batch):
        part = [ids for ids, _ in items[k:k + batch]]
        n = max(map(len, part))
        x = torch.tensor([[pad] * (n - len(p)) + p for p in part], device=device)
        mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in part], device=device)
        y = model.generate(input_ids=x, attention_mask=mask, num_beams=num_beams, do_sample=False,
                           max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=sorted(ends))
        for row in y[:, n:].tolist():   # up to its first end token: what follows is padding
            row = row[:next((j + 1 for j, t in enumerate(row) if t in ends), len(row))]
            out.append(first_line(tok.decode(row, skip_special_tokens=True)))
    return [(text, cut) for text, (_, cut) in zip(out, items)]
