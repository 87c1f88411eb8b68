"""Multiple choice by likelihood, E2WM's way: options are not shown; each option is scored by the
log-probabilities of its tokens after the prompt (`ln`: their mean; `un`: their sum less the sum
after the bare prompt "Answer:", GPT-3's calibration, which E2WM used for the housework and
activity-inference suites).

Token ids are joined, not strings: the prompt's ids, then the ids of " " + option (E2WM tokenised
f"{prompt} {option}" and assumed it splits there). The prompt runs once; its key/value cache is
repeated over the item's options, which then run as one padded batch, so an item costs one prompt
pass plus one short batched pass whatever its option count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

CALIBRATION_PROMPT = "Answer:"
NORMS = ("ln", "un")


@dataclass(frozen=True)
class OptionScore:
    logprob: float        # sum over the option's tokens, given the prompt
    tokens: int           # how many tokens the option has

    @property
    def mean(self) -> float:
        return self.logprob / self.tokens


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def option_scores(model, tokenizer, prompt: str, options: list[str]) -> list[OptionScore]:
    """Each option's summed token log-probability after `prompt` (one prompt pass, one option batch)."""
    device = next(model.parameters()).device
    prompt_ids = _ids(tokenizer, prompt)
    if not prompt_ids:
        raise ValueError("empty prompt")
    opts = [_ids(tokenizer, " " + o) for o in options]
    if any(not o for o in opts):
        raise ValueError(f"an option tokenises to nothing: {options!r}")
    out = model(torch.tensor([prompt_ids], device=device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)             # the first option token
    k, width = len(opts), max(map(len, opts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.full((k, width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((k, len(prompt_ids) + width), dtype=torch.long, device=device)
    mask[:, :len(prompt_ids)] = 1
    for i, o in enumerate(opts):
        batch[i, :len(o)] = torch.tensor(o, device=device)
        mask[i, len(prompt_ids):len(prompt_ids) + len(o)] = 1
    name = "cache" if "cache" in out else "past_key_values"   # transformers renamed it in 5.x
    cache = out[name]
    cache.batch_repeat_interleave(k)
    logits = model(batch, attention_mask=mask, use_cache=True, **{name: cache}).logits
    later = torch.log_softmax(logits.float(), -1)                         # predicts token j + 1
    scores = []
    for i, o in enumerate(opts):
        total = first[o[0]]
        if len(o) > 1:
            total = total + later[i, torch.arange(len(o) - 1, device=device),
                                  torch.tensor(o[1:], device=device)].sum()
        scores.append(OptionScore(float(total), len(o)))
    return scores


def choose(model, tokenizer, prompt: str, options: list[str], norm: str) -> tuple[int, list[float]]:
    """(index of the best option, its normalised scores) under `norm` ("ln" or "un"); ties go to the
    first, as E2WM's argmax."""
    if norm not in NORMS:
        raise ValueError(f"normalisation {norm!r}: must be one of {', '.join(NORMS)}")
    scores = option_scores(model, tokenizer, prompt, options)
    if norm == "ln":
        values = [s.mean for s in scores]
    else:
        base = option_scores(model, tokenizer, CALIBRATION_PROMPT, options)
        values = [s.logprob - b.logprob for s, b in zip(scores, base)]
    return max(range(len(values)), key=lambda i: (values[i], -i)), values
