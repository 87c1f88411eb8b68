"""One tokenisation rule for training rows, multiple-choice scoring, generation prompts, perplexity
and the Fisher, so a model is scored on the very token sequences it was trained on.

* Text is encoded with the tokenizer's own special tokens: a BOS where it adds one (LLaMA), none
  where it adds none (GPT-2, GPT-Neo), whatever its `bos_token` says.
* A (prompt, continuation) pair is the one string f"{prompt} {continuation}{end}" (a training row is
  E2WM's f"{input} {ref}\\n"); the continuation's tokens are those whose character span ends after
  the prompt's last character. Encoding " " + continuation on its own would not give them: a LLaMA
  (SentencePiece) tokenizer puts its word-boundary "▁" before that space too, an extra token.
* A prompt on its own (what generation starts from) loses the special tokens a tokenizer appends
  (EOS), so it is what a training row holds before its answer (unless a merge crosses the joint).
"""
from __future__ import annotations

from e2wm.errors import E2WMError


def encode(tokenizer, texts: list[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of each text, truncated to `max_length` tokens (special tokens included) if given."""
    enc = tokenizer(texts, add_special_tokens=True, truncation=max_length is not None, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], end: str = "") -> list[tuple[list[int], int]]:
    """(ids, start) of each f"{prompt} {continuation}{end}": ids[start:] are the continuation's tokens
    (and any special token the tokenizer appends)."""
    if not getattr(tokenizer, "is_fast", False):
        raise E2WMError(f"tokenizer {type(tokenizer).__name__}: a fast (Rust) tokenizer is needed, "
                        f"for the character offsets that find where an answer starts")
    enc = tokenizer([f"{p} {c}{end}" for p, c in pairs], add_special_tokens=True, return_offsets_mapping=True)
    out = []
    for (prompt, _), ids, offsets in zip(pairs, enc["input_ids"], enc["offset_mapping"]):
        # special tokens span no characters, so none of them starts the continuation
        start = next((i for i, (a, b) in enumerate(offsets) if b > len(prompt) and b > a), len(ids))
        out.append((list(ids), start))
    return out


def drop_trailing_specials(tokenizer, ids: list[int]) -> list[int]:
    """`ids` without the special tokens at its end (an EOS some tokenizers append)."""
    special = set(tokenizer.all_special_ids)
    n = len(ids)
    while n and ids[n - 1] in special:
        n -= 1
    return ids[:n]


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The ids a generation starts from: those a training row holds before its answer."""
    return drop_trailing_specials(tokenizer, encode(tokenizer, [prompt])[0])
