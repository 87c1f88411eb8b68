"""`e2wm build-data`: collected episodes -> training rows per task and evaluation suites, leak-checked.

Output (written whole by `atomic_dir`; an existing directory is never overwritten):
  train/<task>.jsonl     training rows {"task", "input", "ref", "weight"}; the text is f"{input} {ref}\n"
  eval/<suite>.jsonl     E2WM's released evaluation format: {"input", "ref"} or
                         {"input", "answer_list", "answer"}, one JSON object per line
  eval/<suite>.suite.yaml its spec, which `e2wm eval` scores it by: kind, metric, normalisation, world
  hf/                    a `datasets` DatasetDict: "train" ({task, input, ref, weight}) and one split per suite
  README.md              the dataset card: sizes, lengths, answer spreads, baselines, coverage, the
                         leak guard's counts, the split and the generating config
  summary.json           the same figures for machines
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from e2wm.collect.episodes import canonical_json
from e2wm.data.config import DataConfig
from e2wm.data.eval_format import SIDECAR, spec_text
from e2wm.data import suites as suite_registry
from e2wm.data.health import first_room_mismatch, suite_health, task_health
from e2wm.data.leak import LeakGuard
from e2wm.data.prompts import Templates
from e2wm.data.split import load_episodes, split
from e2wm.data.suites.options import INTERNAL
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from e2wm.data.views import names_goal_objects, pair, plans
from e2wm.errors import E2WMError
from e2wm.files import atomic_dir, dumps, output_dir
from e2wm.world.activities import ACTIVITIES

TASKS = (plan_generation, activity_recognition, counting, object_path)


def build_data(episodes_dir: str | Path, out: str | Path, cfg: DataConfig, log=print,
               tokenizer: str | None = None) -> dict:
    out = output_dir(out, "--out", fresh=True, inputs={"--episodes": episodes_dir, "--tokenizer": tokenizer})
    tok = _tokenizer(tokenizer) if tokenizer else None
    eps = load_episodes(episodes_dir)
    sp = split(eps, cfg.eval_fraction, cfg.unseen_fraction, cfg.seed)
    log(f"{len(eps)} episodes: {len(sp.train)} for training, {len(sp.eval)} for evaluation "
        f"({len(sp.eval_scenes)} held-out scenes, {len(sp.unseen_activities)} held-out activities)")
    t = Templates(cfg.template)
    train: dict[str, list[dict]] = {}
    for m in TASKS:
        train[m.TASK] = m.build(sp.train, random.Random(f"{cfg.seed}:{m.TASK}"), t,
                                weight=cfg.weights.get(m.TASK, m.WEIGHT))
    guard = LeakGuard([f"{r['input']} {r['ref']}" for rows in train.values() for r in rows],
                      cfg.ngram, cfg.threshold)
    pairs = {pair(e) for e in plans(sp.train)}
    train_keys = {e.key for e in sp.train}
    suites: dict[str, tuple[str, list[dict]]] = {}
    dropped: dict[str, dict] = {}
    for name, kind in suite_registry.SUITES.items():
        rows = suite_registry.build(name, sp.eval, sp.train, random.Random(f"{cfg.seed}:{name}"), t)
        dropped[name] = _guard(name, rows, guard, pairs, train_keys)
        suites[name] = (kind, rows)
    guard.check({name: [r for r in rows if "pair" not in r] for name, (_, rows) in suites.items()})
    small = [f"{name} ({len(rows)})" for name, (_, rows) in suites.items() if len(rows) < cfg.min_suite_rows]
    if small:
        raise E2WMError(f"{episodes_dir}: too few evaluation items for suite(s) {', '.join(small)}; "
                        f"min_suite_rows is {cfg.min_suite_rows}: collect more episodes or lower it")
    summary = _summary(cfg, sp, eps, train, suites, dropped, tok)
    _write(out, cfg, train, suites, summary)
    return summary


def _guard(name: str, rows: list[dict], guard: LeakGuard, pairs: set, train_keys: set) -> dict:
    """Drop (in place) the rows that leak or repeat; the counts by reason.

    A row from a plan carries its (activity, plan) pair and leaks when training has that pair;
    story rows leak by n-gram containment (`LeakGuard`); any row of a training episode leaks; a
    row repeating an earlier query of its suite (query and answer, for housework) is dropped."""
    counts = {"pair": 0, "episode": 0, "ngram": 0, "repeat": 0}
    seen, keep = set(), []
    for r in rows:
        key = r["probe"] if name == "housework_qa" else r["query"]
        if r.get("episode") in train_keys:
            counts["episode"] += 1
        elif "pair" in r and tuple(r["pair"]) in pairs:
            counts["pair"] += 1
        elif "pair" not in r and guard.leaks(r["probe"]):
            counts["ngram"] += 1
        elif key in seen:
            counts["repeat"] += 1
        else:
            seen.add(key)
            keep.append(r)
    rows[:] = keep
    return counts


def _tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise E2WMError(f"--tokenizer {name}: cannot load it: {str(e).splitlines()[0]}") from None


def _summary(cfg, sp, eps, train, suites, dropped, tok) -> dict:
    trained = sorted({e.activity for e in plans(sp.train)})
    library = [a.name for a in ACTIVITIES]
    plan_eps = [e for e in eps if e.kind == "plan" and e.success]
    return {
        "config": cfg.to_dict(),
        "engine": sorted({e.engine for e in eps}),
        "split": {"train_episodes": len(sp.train), "eval_episodes": len(sp.eval),
                  "eval_scenes": list(sp.eval_scenes), "unseen_activities": list(sp.unseen_activities)},
        "coverage": {"library": len(library), "trained": len(set(trained) & set(library)),
                     "missing": [a for a in library if a not in trained],
                     "activity_scene_pairs": len({(e.activity, e.scene) for e in plans(eps)})},
        "plans": {"successful": len(plan_eps),
                  "without_goal_object": sum(not names_goal_objects(e) for e in plan_eps),
                  "first_room_mismatch": round(sum(map(first_room_mismatch, plans(eps)))
                                               / max(len(plans(eps)), 1), 3)},
        "train": {task: task_health(task, rows, tok) for task, rows in train.items()},
        "eval": {s: suite_health(kind, rows, dropped[s], tok) for s, (kind, rows) in suites.items()},
        "overlaps": 0,
    }


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(canonical_json(r) + "\n" for r in rows))


def _write(out: Path, cfg, train, suites, summary) -> None:
    import datasets
    datasets.disable_progress_bars()
    with atomic_dir(out) as tmp:
        for task, rows in train.items():
            _jsonl(tmp / "train" / f"{task}.jsonl", rows)
        eval_rows = {}
        for name, (_, rows) in suites.items():
            eval_rows[name] = [{k: v for k, v in r.items() if k not in INTERNAL} for r in rows]
            _jsonl(tmp / "eval" / f"{name}.jsonl", eval_rows[name])
            (tmp / "eval" / f"{name}{SIDECAR}").write_text(spec_text(name, suite_registry.SPECS[name]))
        splits = {"train": datasets.Dataset.from_list([r for rows in train.values() for r in rows])}
        splits.update({name: datasets.Dataset.from_list(rows) for name, rows in eval_rows.items()})
        datasets.DatasetDict(splits).save_to_disk(str(tmp / "hf"))
        (tmp / "summary.json").write_text(dumps(summary, indent=1))
        (tmp / "README.md").write_text(_card(summary))


def _card(s: dict) -> str:
    cov, pl = s["coverage"], s["plans"]
    lines = ["# e2wm embodied-experience dataset", "",
             "Built by `e2wm build-data` from collected episodes (MCTS plans, multi-agent exploration and "
             "single-agent stories in the e2wm world model). Training rows use E2WM's four task formats, "
             f"evaluation suites E2WM's released file format; templates: `{s['config']['template']}`. "
             f"Engine: {', '.join(s['engine'])}. Lengths are in words (tokens when a tokenizer was given).",
             "", "## Health", "",
             f"- library activities trained on: {cov['trained']} / {cov['library']}"
             + (f" (missing: {', '.join(cov['missing'])})" if cov["missing"] else ""),
             f"- (activity, apartment) kinds of goal planned: {cov['activity_scene_pairs']}",
             f"- successful plans: {pl['successful']}; without a goal object in their lines: "
             f"{pl['without_goal_object']} (never used)",
             f"- plans whose opening room walk is not the first object's room: {pl['first_room_mismatch']:.1%}",
             "", "## Split", "",
             f"- training episodes: {s['split']['train_episodes']}; evaluation episodes: "
             f"{s['split']['eval_episodes']}",
             f"- held-out scenes: {', '.join(s['split']['eval_scenes']) or 'none'}",
             f"- held-out (unseen) activities: {', '.join(s['split']['unseen_activities']) or 'none'}", "",
             "## Training tasks", "", "| task | rows | weight | mean length | max length | answers |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {t} | {v['rows']} | {v['weight']} | {_len(v, 'mean')} | {_len(v, 'max')} | "
              f"{_spread(v.get('answers'))} |" for t, v in s["train"].items()]
    lines += ["", "## Evaluation suites", "",
              "Baselines: `majority` always gives the most common answer; `overlap` picks the option sharing "
              "most content words with the question. Dropped: (activity, plan) pair in training / "
              "training episode / n-gram overlap with training / repeated query.", "",
              "| suite | format | rows | dropped | mean length | max length | answers | majority | overlap |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n, v in s["eval"].items():
        d = v["dropped"]
        lines.append(f"| {n} | {v['format']} | {v['rows']} | {d['pair']}/{d['episode']}/{d['ngram']}/"
                     f"{d['repeat']} | {_len(v, 'mean')} | {_len(v, 'max')} | {_spread(v.get('answers'))} | "
                     f"{_pct(v.get('majority_baseline'))} | {_pct(v.get('overlap_baseline'))} |")
    lines += ["", "Leak guard: no evaluation item shares its (activity, plan) pair or its episode with "
              f"training, and no story item overlaps it ({s['config']['ngram']}-gram containment below "
              f"{s['config']['threshold']}); overlaps in the final suites: {s['overlaps']}.", "",
              "## Generating config", "", "```json", json.dumps(s["config"], indent=1), "```", ""]
    return "\n".join(lines)


def _len(v: dict, key: str) -> str:
    w = v["words"]
    return f"{w[key]} ({w['tokens'][key]} tok)" if "tokens" in w else str(w[key])


def _spread(d) -> str:
    return " ".join(f"{k}:{x:.0%}" for k, x in d.items()) if d else ""


def _pct(x) -> str:
    return "" if x is None else f"{x:.1%}"
