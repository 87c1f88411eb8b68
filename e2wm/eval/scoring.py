"""Multiple choice by likelihood, E2WM's way: options are not shown; each option is scored by the
log-probabilities of its tokens after the prompt (`ln`: their mean; `un`: their sum less the sum
after the bare prompt "Answer:", GPT-3's calibration, which E2WM used for the housework and
activity-inference suites).

Options are tokenised by the shared rule (`e2wm.train.tokens`): an option's tokens are those of
" " + option inside the one string f"{prompt} {option}" (E2WM tokenised that string too), which are
the answer tokens of the training row f"{prompt} {option}\\n" less its newline. The options'
encodings share a prefix (up to the first token of any option), which runs once; its key/value cache
is repeated over the options, whose remaining tokens then run as one padded batch, so an item costs
one prompt pass plus one short batched pass whatever its option count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from e2wm.train.tokens import drop_trailing_specials, encode_pairs

CALIBRATION_PROMPT = "Answer:"


@dataclass(frozen=True)
class OptionScore:
    logprob: float              # sum over the option's tokens, given the prompt
    ids: tuple[int, ...]        # the option's tokens, as scored

    @property
    def tokens(self) -> int:
        return len(self.ids)

    @property
    def mean(self) -> float:
        return self.logprob / self.tokens


def _encode(tokenizer, prompt: str, options: list[str]) -> list[tuple[list[int], int]]:
    """(ids, start) per option: f"{prompt} {option}" without trailing special tokens, whose ids[start:]
    are scored; ValueError if an option has no token, or no token precedes it."""
    out = []
    for o, (ids, start) in zip(options, encode_pairs(tokenizer, [(prompt, o) for o in options])):
        ids = drop_trailing_specials(tokenizer, ids)
        if start >= len(ids):
            raise ValueError(f"option {o!r} tokenises to nothing")
        if start == 0:
            raise ValueError(f"no token precedes option {o!r} (an empty prompt, and no BOS)")
        out.append((ids, start))
    return out


@torch.no_grad()
def option_scores(model, tokenizer, prompt: str, options: list[str]) -> list[OptionScore]:
    """Each option's summed token log-probability after `prompt` (one prefix pass, one option batch)."""
    device = next(model.parameters()).device
    enc = _encode(tokenizer, prompt, options)
    head = enc[0][0]
    bound = min(start for _, start in enc)
    shared = next((j for j in range(bound) if any(ids[j] != head[j] for ids, _ in enc)), bound)
    rests = [ids[shared:] for ids, _ in enc]
    k, width = len(rests), max(map(len, rests))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.full((k, width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((k, shared + width), dtype=torch.long, device=device)
    mask[:, :shared] = 1
    for i, r in enumerate(rests):
        batch[i, :len(r)] = torch.tensor(r, device=device)
        mask[i, shared:shared + len(r)] = 1
    past = {}
    if shared:
        out = model(torch.tensor([head[:shared]], device=device), use_cache=True)
        name = "cache" if "cache" in out else "past_key_values"   # transformers renamed it in 5.x
        out[name].batch_repeat_interleave(k)
        past = {name: out[name]}
    logits = model(batch, attention_mask=mask, use_cache=bool(shared), **past).logits
    if shared:   # the prefix's last logit predicts token `shared`
        logits = torch.cat([out.logits[:, -1:].expand(k, -1, -1), logits], 1)
    # logits[:, t] predicts token origin + t; scored token j is read at row j - origin
    origin = max(shared, 1)
    rows, cols, targets = [], [], []
    for i, (ids, start) in enumerate(enc):
        rows += [i] * (len(ids) - start)
        cols += range(start - origin, len(ids) - origin)
        targets += ids[start:]
    rows, cols, targets = (torch.tensor(x, device=device) for x in (rows, cols, targets))
    logp = torch.log_softmax(logits[rows, cols].float(), -1).gather(1, targets[:, None])[:, 0]
    sums = torch.zeros(k, dtype=logp.dtype, device=device).index_add_(0, rows, logp).tolist()
    return [OptionScore(total, tuple(ids[start:])) for total, (ids, start) in zip(sums, enc)]


def choose(model, tokenizer, prompt: str, options: list[str], calibration: dict | None = None
           ) -> dict[str, tuple[int, list[float]]]:
    """Per normalisation ("ln", "un"): (index of the best option, the options' normalised scores); ties
    go to the first, as E2WM's argmax. The one scorer: `e2wm eval` picks with it. `calibration` caches
    the options' scores after the bare prompt "Answer:" by option list (one dict per model and run)."""
    cache, key = {} if calibration is None else calibration, tuple(options)
    scores = option_scores(model, tokenizer, prompt, options)
    if key not in cache:
        cache[key] = option_scores(model, tokenizer, CALIBRATION_PROMPT, options)
    base = cache[key]
    values = {"ln": [s.mean for s in scores], "un": [s.logprob - b.logprob for s, b in zip(scores, base)]}
    return {norm: (max(range(len(v)), key=lambda i: (v[i], -i)), v) for norm, v in values.items()}
