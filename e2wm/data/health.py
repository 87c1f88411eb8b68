"""The dataset's health, as the card reports it: sizes and lengths, answer spreads, how far a
constant or a word-overlap guess gets on each multiple-choice suite, which activities training
covers, and how many plans open with a walk to a room other than their first object's."""
from __future__ import annotations

import re
import statistics
from collections import Counter

from e2wm.data.leak import words
from e2wm.data.render import ROOMS
from e2wm.data.suites.options import content
from e2wm.world.facts import Fact
from e2wm.world.script import parse_line

_COUNT = re.compile(r"There (?:is no item|is one item|are (\d+) items)")


def lengths(texts, tokenizer=None) -> dict:
    texts = list(texts)
    out = _stats([len(words(t)) for t in texts])
    if tokenizer is not None:
        out["tokens"] = _stats([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])
    return out


def _stats(n) -> dict:
    return {"mean": round(statistics.mean(n), 1), "max": max(n)} if n else {"mean": 0, "max": 0}


def spread(values) -> dict:
    """Value -> share, most common first."""
    c = Counter(values)
    total = sum(c.values())
    return {str(k): round(v / total, 3) for k, v in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def count_of(ref: str) -> int:
    """The number a counting answer sentence states."""
    m = _COUNT.match(ref)
    if not m:
        raise ValueError(f"not a counting answer: {ref!r}")
    return int(m.group(1)) if m.group(1) else (0 if "no item" in ref else 1)


def overlap_accuracy(rows) -> float:
    """Expected accuracy of picking the option sharing most content words with the question
    (ties broken uniformly at random)."""
    total = 0.0
    for r in rows:
        q = content(r["question"])
        scores = [len(content(o) & q) for o in r["answer_list"]]
        best = [o for o, s in zip(r["answer_list"], scores) if s == max(scores)]
        total += (r["answer"] in best) / len(best)
    return round(total / len(rows), 3) if rows else 0.0


def majority_accuracy(rows) -> float:
    """Accuracy of always answering the most common answer."""
    c = Counter(r["answer"] for r in rows)
    return round(c.most_common(1)[0][1] / len(rows), 3) if rows else 0.0


def first_room_mismatch(ep) -> bool:
    """The plan opens with a walk to a room, and the first object it acts on starts elsewhere."""
    lines = [parse_line(line) for line in ep.lines]
    if not lines or lines[0].action != "WALK" or ep.names.get(str(lines[0].ids[0])) not in ROOMS:
        return False
    first = next((i for sl in lines[1:] for i in sl.ids if ep.names.get(str(i)) not in ROOMS), None)
    if first is None:
        return False
    homes = [f.b for f in map(Fact.parse, ep.conditions)
             if f.kind == "edge" and f.name == "INSIDE" and f.a == first
             and ep.names.get(str(f.b)) in ROOMS]
    return bool(homes) and homes[0] != lines[0].ids[0]


def task_health(task: str, rows, tokenizer=None) -> dict:
    out = {"rows": len(rows), "weight": rows[0]["weight"] if rows else None,
           "words": lengths((f"{r['input']} {r['ref']}" for r in rows), tokenizer)}
    if task == "counting":
        out["answers"] = spread(count_of(r["ref"]) for r in rows)
    elif task == "object_path":
        out["answers"] = spread(len(r["ref"].split(", ")) for r in rows)
    return out


def suite_health(kind: str, rows, dropped: dict, tokenizer=None) -> dict:
    out = {"format": kind, "rows": len(rows), "dropped": dropped,
           "words": lengths((r["input"] for r in rows), tokenizer)}
    if kind == "mc":
        out["answers"] = spread(r["answer"] for r in rows) if len(set(r["answer"] for r in rows)) <= 8 else None
        out["majority_baseline"] = majority_accuracy(rows)
        out["overlap_baseline"] = overlap_accuracy(rows)
    return out
