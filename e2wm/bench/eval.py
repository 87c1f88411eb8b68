"""`e2wm bench eval`: multiple-choice items/s of the scorer (one prompt pass, its cache repeated over
the options in one batch) against a loop running one full forward per option, E2WM's
`eval_qa.py` way; same model, same items, scores checked equal. Generation: batched decoding that
stops at the newline (`e2wm.eval.generate`) against item-by-item decoding of all new tokens (the
harness before it), greedy and 4 beams; greedy first lines checked equal."""
from __future__ import annotations

import random
import time

import torch

from e2wm.bench import report
from e2wm.data.prompts import COUNT_OPTIONS, Templates
from e2wm.eval.generate import generate
from e2wm.eval.metrics import first_line
from e2wm.eval.scoring import option_scores
from e2wm.train.tokens import encode_pairs, prompt_ids


def _items(n: int, words: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Count-QA-like items: a story of about `words` words, then four short options."""
    rng = random.Random(seed)
    vocab = ["Sue", "took", "the", "cup", "walked", "to", "kitchen", "put", "on", "desk", "bedroom"]
    out = []
    for _ in range(n):
        story = " ".join(rng.choice(vocab) for _ in range(words))
        out.append((Templates().count_query(f"{story}.", "on", "desk"), list(COUNT_OPTIONS)))
    return out


@torch.no_grad()
def _loop(model, tok, prompt: str, options: list[str]) -> list[float]:
    """Each f"{prompt} {option}" through the model whole; the option's tokens by the shared rule."""
    device = next(model.parameters()).device
    out = []
    for ids, start in encode_pairs(tok, [(prompt, o) for o in options]):
        logp = torch.log_softmax(model(torch.tensor([ids], device=device)).logits[0].float(), -1)
        out.append(sum(float(logp[j - 1, ids[j]]) for j in range(start, len(ids))))
    return out


@torch.no_grad()
def old_generate(model, tok, prompt: str, num_beams: int, max_new_tokens: int) -> str:
    """One item, all `max_new_tokens` decoded (stopping at EOS only), then its first line: the harness before
    batching."""
    ids = torch.tensor([prompt_ids(tok, prompt)], device=next(model.parameters()).device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=num_beams, do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return first_line(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


def _gen_bench(model, tok, prompts: list[str], beams: int, new: int, batch: int) -> dict:
    t0 = time.perf_counter()
    ours = [p for p, _ in generate(model, tok, prompts, beams, new, batch)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = [old_generate(model, tok, p, beams, new) for p in prompts]
    t_old = time.perf_counter() - t0
    n = len(prompts)
    return {"batched_items_per_s": round(n / t_ours, 2), "item_by_item_items_per_s": round(n / t_old, 2),
            "ratio": round(t_old / t_ours, 2), "first_lines_equal": sum(a == b for a, b in zip(ours, old))}


def run(items: int = 24, words: int = 120, hidden: int = 256, layers: int = 4, gen_items: int = 32,
        new_tokens: int = 64, batch: int = 16) -> dict:
    from e2wm.train.dist import device
    from e2wm.train.model import byte_tokenizer, tiny_causal_lm
    torch.manual_seed(0)
    model = tiny_causal_lm(hidden=hidden, layers=layers, heads=4).to(device()).eval()
    tok = byte_tokenizer()
    data = _items(items, words)
    option_scores(model, tok, *data[0])          # warm-up
    t0 = time.perf_counter()
    ours = [[s.logprob for s in option_scores(model, tok, p, o)] for p, o in data]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = [_loop(model, tok, p, o) for p, o in data]
    t_loop = time.perf_counter() - t0
    prompts = [p for p, _ in _items(gen_items, words // 4, seed=1)]   # shorter stories: decoding dominates
    generate(model, tok, prompts[:2], 2, 2, 2)   # warm-up (and the end-token set, computed once)
    diff = max(abs(a - b) for x, y in zip(ours, loop) for a, b in zip(x, y))
    return {"bench": "eval", "items": items, "options": 5, "prompt_tokens": len(tok(data[0][0])["input_ids"]),
            "model": f"llama hidden {hidden}, {layers} layers, byte tokens", "device": str(device()),
            "scorer_items_per_s": round(items / t_ours, 2), "loop_items_per_s": round(items / t_loop, 2),
            "ratio": round(t_loop / t_ours, 2), "max_abs_score_diff": diff,
            "generation": {"items": gen_items, "story_words": words // 4, "new_tokens": new_tokens, "batch": batch,
                           **{k: _gen_bench(model, tok, prompts, beams, new_tokens, batch)
                              for k, beams in (("greedy", 1), ("beams4", 4))}}}


def main(args) -> int:
    r = run(args.items, args.words, gen_items=args.gen_items, new_tokens=args.new_tokens)
    g = r["generation"]
    return report(r, f"scorer {r['scorer_items_per_s']} items/s vs one forward per option {r['loop_items_per_s']} "
                  f"items/s: ratio {r['ratio']:.2f} (scores agree to {r['max_abs_score_diff']:.1e})",
                  *(f"generation {k}: batched {v['batched_items_per_s']} items/s vs item by item "
                    f"{v['item_by_item_items_per_s']} items/s: ratio {v['ratio']:.2f}; first lines equal on "
                    f"{v['first_lines_equal']}/{g['items']}" for k, v in g.items() if isinstance(v, dict)))
