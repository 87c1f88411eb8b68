"""`e2wm bench eval`: multiple-choice items/s of the scorer (`option_scores_many`: `batch` items' prompts in
one pass, each prompt's cache repeated over its options, all options in one batch) against today's per-item
scorer (one item per prompt pass; `_per_item_scores`) and a loop running one full forward per option, E2WM's
`eval_qa.py` way; same model, same items, scores checked equal; on count-QA-like items with long prompts
and on activity-recognition-like ones with short (~60-token) prompts. Generation: batched decoding that
stops at the newline (`e2wm.eval.generate`: own greedy / beam-search loop over the KV cache, finished items
leaving the batch) against item-by-item decoding of all new tokens (the harness before it), greedy and 4
beams; first lines compared, and on the first 8 prompts checked equal to transformers' `generate` run alone
with the same end ids (greedy and beams)."""
from __future__ import annotations

import random
import time

import torch

from e2wm.bench import report
from e2wm.data.prompts import COUNT_OPTIONS, Templates
from e2wm.eval.generate import end_ids, generate
from e2wm.eval.metrics import first_line
from e2wm.eval.scoring import option_scores_many
from e2wm.train.tokens import drop_trailing_specials, encode_pairs, prompt_ids

ACTIVITIES = ("Watch TV", "Brush teeth", "Make coffee", "Read a book", "Wash dishes")


def _items(n: int, words: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Count-QA-like items: a story of about `words` words, then four short options."""
    rng = random.Random(seed)
    vocab = ["Sue", "took", "the", "cup", "walked", "to", "kitchen", "put", "on", "desk", "bedroom"]
    out = []
    for _ in range(n):
        story = " ".join(rng.choice(vocab) for _ in range(words))
        out.append((Templates().count_query(f"{story}.", "on", "desk"), list(COUNT_OPTIONS)))
    return out


def _short_items(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Activity-recognition-like items: a ~60-token prompt (byte tokens), then five activity names."""
    rng = random.Random(seed)
    steps = ["Walk to kitchen", "Grab cup", "Switch on TV", "Sit on sofa", "Open fridge", "Walk to bathroom"]
    return [(f"{rng.choice(steps)}. {rng.choice(steps)}.\nQ: What is the activity?\nA:", list(ACTIVITIES))
            for _ in range(n)]


@torch.no_grad()
def _per_item_scores(model, tok, prompt: str, options: list[str]) -> list[float]:
    """Today's per-item scorer (`option_scores` before items were batched), kept as the contender: the options'
    shared prefix runs once, its cache repeated over the options, which run as one padded batch."""
    device = next(model.parameters()).device
    pairs = encode_pairs(tok, [(prompt, o) for o in options])
    enc = [(drop_trailing_specials(tok, ids), start) for ids, start in pairs]
    head, bound = enc[0][0], min(start for _, start in enc)
    shared = next((j for j in range(bound) if any(ids[j] != head[j] for ids, _ in enc)), bound)
    rests = [ids[shared:] for ids, _ in enc]
    k, width = len(rests), max(map(len, rests))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch = torch.full((k, width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((k, shared + width), dtype=torch.long, device=device)
    mask[:, :shared] = 1
    for i, r in enumerate(rests):
        batch[i, :len(r)] = torch.tensor(r, device=device)
        mask[i, shared:shared + len(r)] = 1
    past = {}
    if shared:
        out = model(torch.tensor([head[:shared]], device=device), use_cache=True)
        name = "cache" if "cache" in out else "past_key_values"
        out[name].batch_repeat_interleave(k)
        past = {name: out[name]}
    logits = model(batch, attention_mask=mask, use_cache=bool(shared), **past).logits
    if shared:
        logits = torch.cat([out.logits[:, -1:].expand(k, -1, -1), logits], 1)
    origin = max(shared, 1)
    rows, cols, targets = [], [], []
    for i, (ids, start) in enumerate(enc):
        rows += [i] * (len(ids) - start)
        cols += range(start - origin, len(ids) - origin)
        targets += ids[start:]
    rows, cols, targets = (torch.tensor(x, device=device) for x in (rows, cols, targets))
    logp = torch.log_softmax(logits[rows, cols].float(), -1).gather(1, targets[:, None])[:, 0]
    return torch.zeros(k, dtype=logp.dtype, device=device).index_add_(0, rows, logp).tolist()


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


@torch.no_grad()
def _generate_alone(model, tok, prompt: str, num_beams: int, max_new_tokens: int) -> str:
    """transformers' `generate` on one prompt, stopping where ours does (newline ids and EOS): the text ours must
    give exactly, beams included."""
    ends = sorted(end_ids(tok))
    ids = torch.tensor([prompt_ids(tok, prompt)], device=next(model.parameters()).device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=num_beams, do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=ends)
    row = out[0, ids.shape[1]:].tolist()
    row = row[:next((j + 1 for j, t in enumerate(row) if t in ends), len(row))]
    return first_line(tok.decode(row, skip_special_tokens=True))


def _gen_bench(model, tok, prompts: list[str], beams: int, new: int, batch: int, check: int = 8) -> dict:
    """Items/s of `generate` and of item-by-item decoding (`old_generate`), the first lines they share, and on the
    first `check` prompts whether ours equals transformers' `generate` run alone with the same end ids."""
    t0 = time.perf_counter()
    ours = [p for p, _ in generate(model, tok, prompts, beams, new, batch)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = [old_generate(model, tok, p, beams, new) for p in prompts]
    t_old = time.perf_counter() - t0
    n = len(prompts)
    same = sum(a == _generate_alone(model, tok, p, beams, new) for a, p in zip(ours[:check], prompts))
    return {"batched_items_per_s": round(n / t_ours, 2), "item_by_item_items_per_s": round(n / t_old, 2),
            "ratio": round(t_old / t_ours, 2), "first_lines_equal": sum(a == b for a, b in zip(ours, old)),
            "same_as_generate": f"{same}/{min(check, n)}"}


def _mc_bench(model, tok, data: list[tuple[str, list[str]]], mc_batch: int) -> dict:
    """Items/s of the three multiple-choice scorers on `data`, their ratios, and how far their scores differ."""
    option_scores_many(model, tok, data[:mc_batch], mc_batch)   # warm-up
    _per_item_scores(model, tok, *data[0])
    t0 = time.perf_counter()
    ours = [[s.logprob for s in item] for item in option_scores_many(model, tok, data, mc_batch)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    today = [_per_item_scores(model, tok, p, o) for p, o in data]
    t_today = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = [_loop(model, tok, p, o) for p, o in data]
    t_loop = time.perf_counter() - t0
    n = len(data)
    diff = [max(abs(a - b) for x, y in zip(ours, other) for a, b in zip(x, y)) for other in (today, loop)]
    return {"items": n, "options": len(data[0][1]), "mc_batch": mc_batch,
            "prompt_tokens": round(sum(len(tok(p)["input_ids"]) for p, _ in data) / n),
            "scorer_items_per_s": round(n / t_ours, 2), "per_item_items_per_s": round(n / t_today, 2),
            "loop_items_per_s": round(n / t_loop, 2), "ratio": round(t_loop / t_ours, 2),
            "ratio_vs_per_item": round(t_today / t_ours, 2), "per_item_ratio": round(t_loop / t_today, 2),
            "max_abs_score_diff": max(diff), "max_abs_diff_vs_per_item": diff[0]}


def run(items: int = 24, words: int = 120, hidden: int = 256, layers: int = 4, gen_items: int = 32,
        new_tokens: int = 64, batch: int = 16, mc_batch: int = 16, model_spec: str | None = None,
        precision: str = "fp32") -> dict:
    """`model_spec` (tiny, shape:NAME, a path; default: a random Llama of `hidden` and `layers` with byte tokens)
    loaded in `precision` on this process's device, as `e2wm eval` loads it."""
    from e2wm.train.dist import device
    from e2wm.train.model import DTYPES, byte_tokenizer, load_model, load_tokenizer, tiny_causal_lm
    torch.manual_seed(0)
    if model_spec:
        model = load_model(model_spec, DTYPES[precision], device_map={"": device()}).eval()
        tok, name = load_tokenizer(model_spec), f"{model_spec} ({precision})"
    else:
        model = tiny_causal_lm(hidden=hidden, layers=layers, heads=4).to(device(), DTYPES[precision]).eval()
        tok, name = byte_tokenizer(), f"llama hidden {hidden}, {layers} layers, byte tokens ({precision})"
    mc = _mc_bench(model, tok, _items(items, words), mc_batch)   # long prompts: count-QA-like
    short = _mc_bench(model, tok, _short_items(4 * items, seed=2), mc_batch)   # short: activity-recognition-like
    prompts = [p for p, _ in _items(gen_items, words // 4, seed=1)]   # shorter stories: decoding dominates
    generate(model, tok, prompts[:2], 2, 2, 2)   # warm-up (and the end-token set, computed once)
    return {"bench": "eval", **mc, "model": name,
            "device": str(device()), "short_prompts": short,
            "generation": {"items": gen_items, "story_words": words // 4, "new_tokens": new_tokens, "batch": batch,
                           **{k: _gen_bench(model, tok, prompts, beams, new_tokens, batch)
                              for k, beams in (("greedy", 1), ("beams4", 4))}}}


def main(args) -> int:
    r = run(args.items, args.words, gen_items=args.gen_items, new_tokens=args.new_tokens, model_spec=args.model,
            precision=args.precision)
    g = r["generation"]
    return report(r, f"{r['model']} on {r['device']}",
                  *(f"multiple choice, {m['items']} items of {m['prompt_tokens']}-token prompts: across items "
                     f"(batches of {m['mc_batch']}) {m['scorer_items_per_s']} items/s vs per item "
                     f"{m['per_item_items_per_s']} vs one forward per option {m['loop_items_per_s']} items/s: ratio "
                     f"{m['ratio']:.2f} ({m['ratio_vs_per_item']:.2f}x per item, which is {m['per_item_ratio']:.2f}x "
                     f"the loop; scores agree to {m['max_abs_score_diff']:.1e}, with per item's to "
                     f"{m['max_abs_diff_vs_per_item']:.1e})" for m in (r, r["short_prompts"])),
                  *(f"generation {k}: batched {v['batched_items_per_s']} items/s vs item by item "
                    f"{v['item_by_item_items_per_s']} items/s: ratio {v['ratio']:.2f}; first lines equal on "
                    f"{v['first_lines_equal']}/{g['items']}, same as generate alone on {v['same_as_generate']}"
                    for k, v in g.items() if isinstance(v, dict)))
