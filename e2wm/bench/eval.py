"""`e2wm bench eval`: multiple-choice items/s of the scorer (one prompt pass, its cache repeated over
the options in one batch) against a loop running one full forward per option, E2WM's
`eval_qa.py` way; same model, same items, scores checked equal."""
from __future__ import annotations

import random
import time

import torch

from e2wm.bench import report
from e2wm.data.prompts import COUNT_OPTIONS, Templates
from e2wm.eval.scoring import option_scores
from e2wm.train.tokens import encode_pairs


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


def run(items: int = 24, words: int = 120, hidden: int = 256, layers: int = 4) -> dict:
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
    diff = max(abs(a - b) for x, y in zip(ours, loop) for a, b in zip(x, y))
    return {"bench": "eval", "items": items, "options": 5, "prompt_tokens": len(tok(data[0][0])["input_ids"]),
            "model": f"llama hidden {hidden}, {layers} layers, byte tokens", "device": str(device()),
            "scorer_items_per_s": round(items / t_ours, 2), "loop_items_per_s": round(items / t_loop, 2),
            "ratio": round(t_loop / t_ours, 2), "max_abs_score_diff": diff}


def main(args) -> int:
    r = run(args.items, args.words)
    return report(r, f"scorer {r['scorer_items_per_s']} items/s vs one forward per option {r['loop_items_per_s']} "
                  f"items/s: ratio {r['ratio']:.2f} (scores agree to {r['max_abs_score_diff']:.1e})")
