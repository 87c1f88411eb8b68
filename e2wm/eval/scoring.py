"""Multiple choice by likelihood, E2WM's way: options are not shown; each option is scored by the
log-probabilities of its tokens after the prompt (`ln`: their mean; `un`: their sum less the sum
after the bare prompt "Answer:", GPT-3's calibration, which E2WM used for the housework and
activity-inference suites).

Options are tokenised by the shared rule (`e2wm.train.tokens`): an option's tokens are those of
" " + option inside the one string f"{prompt} {option}" (E2WM tokenised that string too), which are
the answer tokens of the training row f"{prompt} {option}\\n" less its newline.

One scorer, `option_scores_many`, scores several items together (`option_scores` and `choose` are its
batch of one). An item's options' encodings share a prefix (up to the first token of any option); the
items' prefixes run as one batch, left-padded with position ids counted from the attention mask (pads
only ever precede a prefix, so the distances between real tokens, which sliding-window and local
attention go by, are those of the item alone). Each prefix's key/value cache is then repeated over its
own options, and every option of the batch runs in one right-padded pass that extends the cache (its
position ids continue its prefix's; its mask hides the other items' pads). A batch of items costs one
prefix pass plus one short pass whatever their option counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from e2wm.eval.placement import input_device
from e2wm.eval.prefill import prefill
from e2wm.train.model import max_positions
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


Encoded = list[tuple[list[int], int]]   # (ids, start) per option of one item


def _encode_many(tokenizer, items: list[tuple[str, list[str]]], limit: int | None = None) -> list[Encoded]:
    """Per item, (ids, start) per option: f"{prompt} {option}" without trailing special tokens, whose
    ids[start:] are scored; ValueError if an option has no token, or no token precedes it. Where an item's
    longest encoding exceeds the model's `limit` positions, every option of it loses the same number of
    leading prompt tokens (its question and the options stay; `bounded` does the same for generation)."""
    key = tuple((p, tuple(o)) for p, o in items)
    return [_bound(enc, limit, options) for enc, (_, options) in zip(_encoded(tokenizer, key), items)]


@lru_cache(maxsize=4)   # `e2wm eval` plans, scores and checks for cuts on one suite's items: encoded once
def _encoded(tokenizer, items: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[Encoded, ...]:
    pairs = [(p, o) for p, options in items for o in options]
    flat = iter(encode_pairs(tokenizer, pairs)) if pairs else iter(())
    out = []
    for prompt, options in items:
        if not options:
            raise ValueError(f"no options after prompt {prompt[-60:]!r}")
        enc = []
        for o in options:
            ids, start = next(flat)
            ids = drop_trailing_specials(tokenizer, ids)
            if start >= len(ids):
                raise ValueError(f"option {o!r} tokenises to nothing")
            if start == 0:
                raise ValueError(f"no token precedes option {o!r} (an empty prompt, and no BOS)")
            enc.append((ids, start))
        out.append(enc)
    return tuple(out)


def _bound(enc: Encoded, limit: int | None, options: list[str]) -> Encoded:
    excess = max(len(ids) for ids, _ in enc) - limit if limit else 0
    if excess <= 0:
        return enc
    if any(start - excess < 1 for _, start in enc):
        raise ValueError(f"an option of {options!r} leaves no room for its prompt in the model's {limit} positions")
    return [(ids[excess:], start - excess) for ids, start in enc]


def prompts_cut(model, tokenizer, items: list[tuple[str, list[str]]]) -> list[bool]:
    """Whether each item's prompt loses leading tokens to fit the model's positions (as `option_scores_many`
    scores it)."""
    limit = max_positions(model)
    return [bool(limit) and max(len(ids) for ids, _ in e) > limit for e in _encode_many(tokenizer, items)]


def _shared(enc: Encoded) -> int:
    """How many leading tokens every option's encoding holds alike, before the first option token."""
    head = enc[0][0]
    bound = min(start for _, start in enc)
    return next((j for j in range(bound) if any(ids[j] != head[j] for ids, _ in enc)), bound)


def _groups(enc: list[Encoded], batch: int, cache_tokens: float, limit: int | None) -> list[list[int]]:
    """Items in batches: sorted by (shared prefix, longest tail), a batch closed at `batch` items, at
    `cache_tokens` repeated cache entries (option rows x padded prefix; a lone item may exceed it) or where the
    padded prefix + options would pass the model's `limit` positions."""
    shared = [_shared(e) for e in enc]
    tails = [max(len(ids) for ids, _ in e) - s for e, s in zip(enc, shared)]
    out, group = [], []
    for i in sorted(range(len(enc)), key=lambda i: (shared[i], tails[i])):   # prefixes ascending
        if group and (len(group) == batch or shared[i] * sum(len(enc[j]) for j in (i, *group)) > cache_tokens
                      or (limit and shared[i] + max(tails[i], *(tails[j] for j in group)) > limit)):
            out.append(group)
            group = []
        group.append(i)
    return out + [group] if group else out


def plan(model, tokenizer, items: list[tuple[str, list[str]]], batch: int = 16, cache_tokens: int = 4096
         ) -> list[list[int]]:
    """The batches (lists of item indices) `option_scores_many` scores `items` in. Ranks that deal these batches
    out and score each with `groups=` get, item for item, the floats of one process (a batch's sums depend on
    the items beside it, so a rank must not batch its items anew)."""
    if batch < 1:
        raise ValueError(f"batch {batch}: must be at least 1")
    limit = max_positions(model)
    return _groups(_encode_many(tokenizer, items, limit), batch, cache_tokens, limit)


@torch.no_grad()
def option_scores_many(model, tokenizer, items: list[tuple[str, list[str]]], batch: int = 16,
                       cache_tokens: int = 4096, groups: list[list[int]] | None = None
                       ) -> list[list[OptionScore] | None]:
    """Each item's (prompt, options) options' summed token log-probabilities after its prompt, up to
    `batch` items scored together (one prefix pass, one option pass) in the batches `plan` makes; results
    in item order. `groups`: score only these batches of `plan` (the other items' entries are None)."""
    if batch < 1:
        raise ValueError(f"batch {batch}: must be at least 1")
    limit = max_positions(model)   # a batch's padded prefix + options must fit the model's positions
    enc = _encode_many(tokenizer, items, limit)
    out: list = [None] * len(items)
    for group in _groups(enc, batch, cache_tokens, limit) if groups is None else groups:
        for j, s in zip(group, _score(model, tokenizer, [enc[j] for j in group], [_shared(enc[j]) for j in group])):
            out[j] = s
    return out


def _score(model, tokenizer, enc: list[Encoded], shared: list[int]) -> list[list[OptionScore]]:
    """One batch of items: their prefixes (`shared[i]` tokens of item i) left-padded in one pass, each
    cache repeated over the item's options, then all options right-padded in one pass."""
    device = input_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(shared)   # the prefixes' padded length
    owner = [i for i, e in enumerate(enc) for _ in e]                  # option row -> its item
    rests = [ids[s:] for e, s in zip(enc, shared) for ids, _ in e]     # each option's tokens after the prefix
    wide = max(map(len, rests))
    head_mask = [[0] * (width - s) + [1] * s for s in shared]
    owner_t = torch.tensor(owner, device=device)
    past, last = {}, None
    if width:
        first = prefill(model, [e[0][0][:s] for e, s in zip(enc, shared)], pad)
        first.cache.batch_select_indices(owner_t)   # each item's cache, once per option
        past, last = {"cache": first.cache}, first.last   # last: predicts each item's token `shared`
    ids = torch.tensor([r + [pad] * (wide - len(r)) for r in rests], device=device)
    rows_mask = [head_mask[i] + [1] * len(r) + [0] * (wide - len(r)) for i, r in zip(owner, rests)]
    mask = torch.tensor(rows_mask, device=device)
    positions = torch.tensor([[shared[i] + t for t in range(wide)] for i in owner], device=device)
    logits = model(ids, attention_mask=mask, position_ids=positions, use_cache=bool(width), **past).logits
    # token j of an option of item i is predicted at column c = j - shared[i]: c = 0 is the prefix's last
    # logit, c >= 1 the option pass's column c - 1
    rows, cols, targets, row = [], [], [], 0
    for e, s in zip(enc, shared):
        for ids_, start in e:
            rows += [row] * (len(ids_) - start)
            cols += range(start - s, len(ids_) - s)
            targets += ids_[start:]
            row += 1
    rows, cols, targets = (torch.tensor(x, device=device) for x in (rows, cols, targets))
    picked = logits[rows, (cols - 1).clamp(min=0)]
    if last is not None:
        picked = torch.where((cols == 0)[:, None], last[owner_t[rows]], picked)
    logp = torch.log_softmax(picked.float(), -1).gather(1, targets[:, None])[:, 0].tolist()
    sums = [0.0] * len(rests)   # summed in double precision: an option's float32 terms add up to ~1e-5 error
    for r, x in zip(rows.tolist(), logp):
        sums[r] += x
    scores = iter(OptionScore(total, tuple(ids_[start:])) for total, (ids_, start) in
                  zip(sums, (x for e in enc for x in e)))
    return [[next(scores) for _ in e] for e in enc]


def option_scores(model, tokenizer, prompt: str, options: list[str]) -> list[OptionScore]:
    """Each option's summed token log-probability after `prompt`: `option_scores_many`'s batch of one."""
    return option_scores_many(model, tokenizer, [(prompt, options)], batch=1)[0]


def choose_many(model, tokenizer, items: list[tuple[str, list[str]]], calibration: dict | None = None,
                batch: int = 16, groups: list[list[int]] | None = None
                ) -> list[dict[str, tuple[int, list[float]]] | None]:
    """Per item, per normalisation ("ln", "un"): (index of the best option, the options' normalised scores);
    ties go to the first, as E2WM's argmax. The one scorer: `e2wm eval` picks with it, `batch` items
    scored together (`groups`: only these batches of `plan`, the other entries None). `calibration` caches the
    options' scores after the bare prompt "Answer:" by option list (one dict per model and run); a list it
    lacks is scored alone, so its scores do not depend on which items came first."""
    cache = {} if calibration is None else calibration
    wanted = range(len(items)) if groups is None else [i for g in groups for i in g]
    missing = list(dict.fromkeys(tuple(items[i][1]) for i in wanted if tuple(items[i][1]) not in cache))
    cache.update(zip(missing, option_scores_many(model, tokenizer, [(CALIBRATION_PROMPT, list(k)) for k in missing],
                                                 batch=1)))
    scored = option_scores_many(model, tokenizer, items, batch, groups=groups)
    picks = []
    for (_, options), scores in zip(items, scored):
        if scores is None:
            picks.append(None)
            continue
        base = cache[tuple(options)]
        values = {"ln": [s.mean for s in scores], "un": [s.logprob - b.logprob for s, b in zip(scores, base)]}
        picks.append({norm: (max(range(len(v)), key=lambda i: (v[i], -i)), v) for norm, v in values.items()})
    return picks


def choose(model, tokenizer, prompt: str, options: list[str], calibration: dict | None = None
           ) -> dict[str, tuple[int, list[float]]]:
    """`choose_many`'s batch of one item."""
    return choose_many(model, tokenizer, [(prompt, options)], calibration, batch=1)[0]
