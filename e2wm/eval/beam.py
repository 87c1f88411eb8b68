"""Greedy and beam-search decoding of a batch of left-padded prompts, run over the model's forward and its KV
cache (no `generate`): what transformers' `generate(num_beams=N, do_sample=False)` gives each prompt, with
its default length penalty (1.0) and early stopping (False), and a set of end ids.

Greedy: each row takes the argmax of its float32 logits; a row whose token is an end id is done.
Beam search, per prompt, as transformers does it (`GenerationMixin._beam_search`):
- each step keeps the K = max(2, 1 + number of end ids) * N best continuations of the N running beams (by
  summed log-softmax; at the first step only beam 0 counts, the others start at -1e9);
- a continuation "hits" when its token is an end id, or at the last of `max_new_tokens`; the N best that don't
  hit run on; those among the first N of the K that hit become finished hypotheses, scored by summed log-prob
  over the number of new tokens (end token included; the prompt not counted), and the N best finished are kept;
- after each step the prompt is done once every slot holds a finished hypothesis and the best running score
  over the new tokens so far is not above the worst finished one: nothing it finds later is kept;
- the answer is the best finished hypothesis.
Speed: the prompt is run once per item (its cache then repeated over the beams), and a prompt that is done
leaves the batch at once (its rows dropped from the cache), where `generate` carries every row to the end.
The masks and additions are transformers' own, in its order, so the scores agree to the bit."""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from e2wm.eval.placement import input_device
from e2wm.eval.prefill import base_model as _base, cache_of, prefill

NEG = -1.0e9   # transformers' "never" score

# GenerationConfig fields that would change greedy or beam-search output (transformers adds logits processors
# or changes the beam rules): a model whose config sets any of them is decoded by `generate` itself
_SPECIAL = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
            "encoder_no_repeat_ngram_size", "bad_words_ids", "force_words_ids", "constraints", "min_length",
            "min_new_tokens", "length_penalty", "early_stopping", "forced_bos_token_id", "forced_eos_token_id",
            "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "exponential_decay_length_penalty",
            "renormalize_logits", "remove_invalid_values", "num_beam_groups", "diversity_penalty",
            "guidance_scale", "watermarking_config", "stop_strings", "max_time", "low_memory",
            "num_return_sequences", "token_healing", "prompt_lookup_num_tokens", "assistant_model")


def plain(model) -> bool:
    """Whether the model (or a PEFT model's base) is a transformers decoder-only LM with a default generation
    config: else (more rules, or anything else with a `generate`) its `generate` decodes."""
    from transformers import GenerationConfig, PreTrainedModel
    if not isinstance(_base(model), PreTrainedModel) or getattr(model.config, "is_encoder_decoder", False):
        return False
    g, d = getattr(model, "generation_config", None), GenerationConfig()
    return g is None or all(getattr(g, f, None) == getattr(d, f, None) for f in _SPECIAL)


class _RoomyLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values are views of buffers with room for the tokens still to come: a
    step writes its token in place, where `DynamicLayer` copies the whole cache to append it. A buffer is made
    anew (the cache copied once) when the rows change (`reorder_cache` makes new tensors) or the room runs out."""
    room = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        n, s = self.keys.shape[-2], key_states.shape[-2]
        kb = getattr(self, "_kb", None)
        if (kb is None or kb.shape[:-2] != self.keys.shape[:-2] or kb.shape[-2] < n + s
                or self.keys.data_ptr() != kb.data_ptr() or self.values.data_ptr() != self._vb.data_ptr()):
            shape = (*self.keys.shape[:-2], n + s + self.room, self.keys.shape[-1])
            self._kb, self._vb = self.keys.new_empty(shape), self.values.new_empty(shape)
            self._kb[..., :n, :] = self.keys
            self._vb[..., :n, :] = self.values
        self._kb[..., n:n + s, :] = key_states
        self._vb[..., n:n + s, :] = value_states
        self.keys, self.values = self._kb[..., :n + s, :], self._vb[..., :n + s, :]
        return self.keys, self.values


def _make_roomy(cache, room: int) -> None:
    """Plain `DynamicLayer`s of `cache` become `_RoomyLayer`s with room for `room` more tokens (sliding-window
    and other layers are left as they are)."""
    for layer in getattr(cache, "layers", ()):
        if type(layer) is DynamicLayer:
            layer.__class__ = _RoomyLayer
            layer.room = room


def _reorder_in_place(cache, idx: torch.Tensor, start: int = 0) -> bool:
    """Row r of each layer's keys and values := row idx[r], copying only the rows that change (beams mostly keep
    their place), and in them only positions from `start` on (beams of one prompt share its cache before the
    new tokens); False (nothing done) for a cache whose layers reorder more than their keys and values."""
    from transformers.cache_utils import CacheLayerMixin
    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer).reorder_cache is not CacheLayerMixin.reorder_cache
                             or not isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers):
        return False
    moved = (idx != torch.arange(len(idx), device=idx.device)).nonzero()[:, 0]
    if len(moved):
        src = idx[moved]
        for layer in layers:   # the right side is a copy: overlapping rows are safe
            to, fro = moved.to(layer.keys.device), src.to(layer.keys.device)   # a spread model's layers differ
            layer.keys[to, ..., start:, :] = layer.keys[fro, ..., start:, :]
            layer.values[to, ..., start:, :] = layer.values[fro, ..., start:, :]
    return True


class _Rows:
    """The model's inputs besides the tokens: one row per sequence decoded, with its cache."""

    def __init__(self, model, prompts: list[list[int]], pad: int, room: int):
        self.model, self.device = model, input_device(model)
        first = prefill(model, prompts, pad)
        self.cache, self.mask, self.logits = first.cache, first.mask, first.last.float()
        self.pos = torch.tensor([[len(p) - 1] for p in prompts], device=self.device)
        self.start = first.width   # the padded prompt: rows of one prompt share it
        _make_roomy(self.cache, room)

    def _forward(self, ids, pos) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, cache=self.cache, use_cache=True)
        self.cache = cache_of(out)
        return out.logits[:, -1, :].float()

    def select(self, idx: torch.Tensor, same_prompt: bool = False):
        """Keep (and reorder, repeat) the rows `idx`; `same_prompt`: each row takes a row of its own prompt."""
        n = self.pos.shape[0]
        if len(idx) == n and _reorder_in_place(self.cache, idx, self.start if same_prompt else 0):
            return   # the same rows: only those that changed were copied; positions and masks agree within a prompt
        self.cache.reorder_cache(idx.to(torch.int32))   # index_select on CPU: int32 indices run ~10x faster
        self.pos = self.pos[idx]
        if self.mask is not None:
            self.mask = self.mask[idx]

    def step(self, tokens: torch.Tensor):
        """The next token of each row; sets `logits` to the float32 logits that follow."""
        self.pos = self.pos + 1
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        self.logits = self._forward(tokens[:, None], self.pos)


# decoder families whose attention takes a prepared 4D mask as it is (no sliding window of their own)
_TREE_TYPES = ("llama", "mistral", "qwen2")


class _Tree:
    """The beams of each prompt as one row: the prompt's keys and values are held once, and each step appends
    the N beams' tokens side by side (N query positions, all at the prompt's next position) with a 4D mask that
    lets each beam see the prompt and its own ancestors' tokens only. A reordering of beams is then a
    reordering of that ancestry mask: no key or value is copied, and attention reads the prompt once per prompt,
    not once per beam. Models: `_TREE_TYPES` without a sliding window, with only plain cache layers."""

    def __init__(self, rows: _Rows, beams: int):
        self.rows, self.n = rows, beams
        self.prompt = (rows.mask.bool() if rows.mask is not None else
                       torch.ones((rows.pos.shape[0], rows.start), dtype=torch.bool, device=rows.device))
        self.pos = rows.pos   # [prompts, 1]: the last prompt position
        self.seen = torch.zeros((self.pos.shape[0], beams, 0), dtype=torch.bool, device=rows.device)
        self.own = torch.eye(beams, dtype=torch.bool, device=rows.device)[None]
        for layer in rows.cache.layers:
            layer.room = beams * layer.room   # N keys a step
        self.dtype = rows.cache.layers[0].keys.dtype
        self.never = torch.finfo(self.dtype).min   # transformers' own masked score

    @staticmethod
    def usable(model, rows: _Rows) -> bool:
        c = _base(model).config
        layers = getattr(rows.cache, "layers", None)
        return (getattr(c, "model_type", None) in _TREE_TYPES and not getattr(c, "sliding_window", None)
                and layers is not None and all(isinstance(x, _RoomyLayer) for x in layers))

    def advance(self, keep: torch.Tensor | None, origin: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Keep the prompts `keep` (all if None); beam b of each continues from beam `origin[:, b]` with token
        `tokens[:, b]`; the float32 logits that follow, one row per (prompt, beam)."""
        if keep is not None:
            self.rows.cache.reorder_cache(keep.to(torch.int32))
            self.prompt, self.pos, self.seen = self.prompt[keep], self.pos[keep], self.seen[keep]
        m = origin.shape[0]
        self.seen = torch.cat([torch.take_along_dim(self.seen, origin[:, :, None], dim=1),
                               self.own.expand(m, -1, -1)], 2)
        self.pos = self.pos + 1
        seen = torch.cat([self.prompt[:, None, :].expand(-1, self.n, -1), self.seen], 2)[:, None]
        # additive, in the cache's dtype: SDPA takes it as is (a boolean one it converts every step, ~8% slower)
        mask = torch.zeros(seen.shape, dtype=self.dtype, device=seen.device).masked_fill_(~seen, self.never)
        out = self.rows.model(input_ids=tokens, attention_mask=mask, position_ids=self.pos.expand(-1, self.n),
                              cache=self.rows.cache, use_cache=True)
        return out.logits.float().reshape(m * self.n, -1)


@torch.no_grad()
def greedy(model, prompts: list[list[int]], max_new_tokens: int, pad: int, ends: frozenset[int]) -> list[list[int]]:
    """Each prompt's new ids, through its first end id (kept) or `max_new_tokens`."""
    rows = _Rows(model, prompts, pad, max_new_tokens)
    end = torch.tensor(sorted(ends), device=rows.device)
    alive, out = list(range(len(prompts))), [[] for _ in prompts]
    for t in range(max_new_tokens):
        nxt = rows.logits.argmax(-1)
        for i, tk in zip(alive, nxt.tolist()):
            out[i].append(tk)
        if t + 1 == max_new_tokens:
            break
        hit = torch.isin(nxt, end)
        if bool(hit.any()):
            keep = (~hit).nonzero()[:, 0]
            if len(keep) == 0:
                break
            rows.select(keep)
            nxt = nxt[keep]
            alive = [alive[r] for r in keep.tolist()]
        rows.step(nxt)
    return out


@torch.no_grad()
def beam_search(model, prompts: list[list[int]], num_beams: int, max_new_tokens: int, pad: int,
                ends: frozenset[int], shared_prompt: bool = True) -> list[list[int]]:
    """Each prompt's new ids of its best finished hypothesis (an end id last, unless `max_new_tokens` ran out)."""
    rows = _Rows(model, prompts, pad, max_new_tokens)
    dev, n, big_t = rows.device, num_beams, max_new_tokens
    b = len(prompts)
    k = max(2, 1 + len(ends)) * n
    end = torch.tensor(sorted(ends), device=dev)
    tree = _Tree(rows, n) if shared_prompt and _Tree.usable(model, rows) else None
    if tree is None:
        rows.select(torch.arange(b, device=dev).repeat_interleave(n))   # the prompt's cache, once per beam
    logits = rows.logits.repeat_interleave(n, 0)
    run_seq = torch.full((b, n, big_t), pad, dtype=torch.long, device=dev)
    run_scores = torch.zeros((b, n), dtype=torch.float32, device=dev)
    run_scores[:, 1:] = NEG
    fin_seq = run_seq.clone()
    fin_len = torch.zeros((b, n), dtype=torch.long, device=dev)
    fin_scores = torch.full((b, n), NEG, dtype=torch.float32, device=dev)
    fin = torch.zeros((b, n), dtype=torch.bool, device=dev)
    unsat = torch.ones((b, 1), dtype=torch.bool, device=dev)
    top_n = torch.cat([torch.ones(n, dtype=torch.bool, device=dev), torch.zeros(k - n, dtype=torch.bool, device=dev)])
    alive, out = list(range(b)), [None] * b

    def done(which: torch.Tensor):
        for r in which.tolist():
            out[alive[r]] = fin_seq[r, 0, :int(fin_len[r, 0])].tolist()

    for t in range(big_t):
        m = len(alive)
        lp = torch.log_softmax(logits, -1)
        vocab = lp.shape[-1]
        lp = (lp.view(m, n, vocab) + run_scores[:, :, None]).view(m, n * vocab)
        top_lp, top_idx = torch.topk(lp, k)
        src, tokens = top_idx // vocab, top_idx % vocab
        top_seq = torch.take_along_dim(run_seq, src[:, :, None], dim=1)
        top_seq[:, :, t] = tokens
        hits = torch.isin(tokens, end) | (t + 1 >= big_t)
        # the N best that don't hit run on
        masked = top_lp + hits.to(torch.float32) * NEG
        nxt = torch.topk(masked, k=n)[1]
        run_seq = torch.take_along_dim(top_seq, nxt[:, :, None], dim=1)
        run_scores = torch.take_along_dim(masked, nxt, dim=1)
        origin = torch.take_along_dim(src, nxt, dim=1)
        # the first N of the K that hit: finished hypotheses, the N best kept
        did = hits & top_n[None, :]
        scores = top_lp / ((t + 1) ** 1.0)
        scores += (~unsat).to(torch.float32) * NEG
        scores += (~did) * NEG
        sel = torch.topk(torch.cat((fin_scores, scores), 1), k=n)[1]
        fin_seq = torch.take_along_dim(torch.cat((fin_seq, top_seq), 1), sel[:, :, None], dim=1)
        fin_scores = torch.take_along_dim(torch.cat((fin_scores, scores), 1), sel, dim=1)
        fin_len = torch.take_along_dim(torch.cat((fin_len, torch.full_like(hits, t + 1, dtype=torch.long)), 1), sel,
                                       dim=1)
        fin = torch.take_along_dim(torch.cat((fin, did), 1), sel, dim=1)
        if t + 1 == big_t:
            break
        best = run_scores[:, :1] / ((t + 1) ** 1.0)
        worst = torch.where(fin, torch.min(fin_scores, dim=1, keepdim=True)[0], NEG)
        unsat = unsat & torch.any(best > worst, dim=-1, keepdim=True)
        # a prompt that can't improve, its N finished scores all real, is frozen: it leaves the batch
        over = ~unsat[:, 0] & (fin_scores > NEG).all(-1)
        flat = (torch.arange(m, device=dev)[:, None] * n + origin)
        keep = None
        if bool(over.any()):
            done(over.nonzero()[:, 0])
            if bool(over.all()):
                alive = []
                break
            keep = (~over).nonzero()[:, 0]
            alive = [alive[r] for r in keep.tolist()]
            run_seq, run_scores, fin_seq, fin_scores, fin_len, fin, unsat, flat, origin = (
                x[keep] for x in (run_seq, run_scores, fin_seq, fin_scores, fin_len, fin, unsat, flat, origin))
        if tree is not None:
            logits = tree.advance(keep, origin, run_seq[:, :, t])
            continue
        rows.select(flat.flatten(), same_prompt=True)
        rows.step(run_seq[:, :, t].flatten())
        logits = rows.logits
    if alive:
        done(torch.arange(len(alive), device=dev))
    return out
