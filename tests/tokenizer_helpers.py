"""Tokenizers of the two families E2WM tuned, built here from text (no download), and a small Llama
for each: GPT-2's byte-level BPE (has a BOS token, adds none) and LLaMA's SentencePiece-style BPE
("▁" word boundaries, adds a BOS), the latter as LLaMA ships it (the legacy normaliser) and with a
Metaspace pre-tokenizer, and once appending an EOS too."""
from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

FAMILIES = ("gpt2", "llama", "llama-legacy", "llama-legacy+eos")
ADDS_BOS = {"gpt2": False, "llama": True, "llama-legacy": True, "llama-legacy+eos": True}


def dataset_texts(root: Path) -> list[str]:
    """Every training and evaluation row of a build-data output as the text a trainer would see."""
    texts = []
    for f in sorted((root / "train").glob("*.jsonl")) + sorted((root / "eval").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            texts.append(f"{r['input']} {r.get('ref', r.get('answer'))}\n")
    return texts


def byte_level_bpe(texts: list[str], vocab: int = 800) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def _llama_like(tk: Tokenizer, legacy: bool, template: str) -> PreTrainedTokenizerFast:
    if legacy:   # LLaMA's tokenizer.json: no pre-tokenizer; "▁" before the text and for every space
        tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tk.pre_tokenizer = None
        tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tk.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<s>", tk.token_to_id("<s>")), ("</s>", tk.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")


def sentencepiece_bpe(texts: list[str], legacy: bool, eos: bool = False, vocab: int = 800):
    """Merges learnt within words; "\\n" kept alone and every printable ASCII character known, as
    LLaMA's byte fallback does."""
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=list(string.printable), show_progress=False))
    return _llama_like(tk, legacy, "<s> $A </s>" if eos else "<s> $A")


def family(name: str, texts: list[str]) -> PreTrainedTokenizerFast:
    if name == "gpt2":
        return byte_level_bpe(texts)
    return sentencepiece_bpe(texts, legacy="legacy" in name, eos=name.endswith("+eos"))


def crossing_bpe(bos: bool) -> PreTrainedTokenizerFast:
    """A legacy LLaMA-style tokenizer whose merges cross the prompt/option joint, so options' encodings
    differ before it: "Pick:" + " one" -> ... "k" ":▁" "o" ..., but "Pick:" + " apple" -> ... "k" ":" "▁a" ...;
    "k" + " b" -> "▁" "k▁" "b", but "k" + " a" -> "▁k" "▁a" (without a BOS, the first tokens differ)."""
    chars = "▁Pick:aponetbrl"
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *dict.fromkeys(chars)])}
    merges = [("▁", "a"), ("k", "▁"), (":", "▁"), ("▁", "k")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return _llama_like(Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>")), legacy=True,
                       template="<s> $A" if bos else "$A")


def small_llama(tokenizer, seed: int = 0):
    """A small random fp32 Llama over the tokenizer's vocabulary."""
    from e2wm.train.model import tiny_causal_lm
    return tiny_causal_lm(seed=seed, vocab=len(tokenizer))
