"""`e2wm build-data`: collected episodes -> training rows per task and evaluation suites, leak-checked.

Output (written under a temporary name, then renamed; an existing directory is never overwritten):
  train/<task>.jsonl     E2WM training format {"input", "ref"} (weights in the dataset and the card)
  eval/<suite>.jsonl     E2WM's released evaluation format: {"input", "ref"} or
                         {"input", "answer_list", "answer"}, one JSON object per line
  hf/                    a `datasets` DatasetDict: "train" ({task, input, ref, weight}) and one split per suite
  README.md              the dataset card: counts, length statistics, the split, the generating config
  summary.json           the same figures for machines
"""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
from pathlib import Path

from e2wm.collect.episodes import canonical_json
from e2wm.data.config import DataConfig
from e2wm.data.leak import LeakGuard, words
from e2wm.data.split import load_episodes, split
from e2wm.data import suites as suite_registry
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from e2wm.errors import E2WMError

TASKS = (plan_generation, activity_recognition, counting, object_path)


def build_data(episodes_dir: str | Path, out: str | Path, cfg: DataConfig, log=print) -> dict:
    out = Path(out)
    if out.exists():
        raise E2WMError(f"{out}: already exists; choose another --out or remove it")
    eps = load_episodes(episodes_dir)
    sp = split(eps, cfg.eval_fraction, cfg.unseen_fraction, cfg.seed)
    log(f"{len(eps)} episodes: {len(sp.train)} for training, {len(sp.eval)} for evaluation "
        f"({len(sp.eval_scenes)} held-out scenes, {len(sp.unseen_activities)} held-out activities)")
    train: dict[str, list[dict]] = {}
    for m in TASKS:
        train[m.TASK] = m.build(sp.train, random.Random(f"{cfg.seed}:{m.TASK}"),
                                weight=cfg.weights.get(m.TASK, m.WEIGHT))
    guard = LeakGuard([r["input"] + r["ref"] for rows in train.values() for r in rows],
                      cfg.ngram, cfg.threshold)
    suites: dict[str, tuple[str, list[dict]]] = {}
    dropped: dict[str, int] = {}
    for name, kind in suite_registry.SUITES.items():
        rows = suite_registry.build(name, sp.eval, sp.train, random.Random(f"{cfg.seed}:{name}"))
        keep = [r for r in rows if not guard.leaks(r["probe"])]
        dropped[name] = len(rows) - len(keep)
        suites[name] = (kind, keep)
    guard.check({name: rows for name, (_, rows) in suites.items()})
    summary = _summary(cfg, sp, train, suites, dropped)
    _write(out, cfg, train, suites, summary)
    return summary


def _lengths(texts) -> dict:
    n = [len(words(t)) for t in texts]
    return {"mean": round(statistics.mean(n), 1), "max": max(n)} if n else {"mean": 0, "max": 0}


def _summary(cfg, sp, train, suites, dropped) -> dict:
    return {
        "config": cfg.to_dict(),
        "split": {"train_episodes": len(sp.train), "eval_episodes": len(sp.eval),
                  "eval_scenes": list(sp.eval_scenes), "unseen_activities": list(sp.unseen_activities)},
        "train": {t: {"rows": len(rows), "weight": rows[0]["weight"] if rows else None,
                      "words": _lengths(r["input"] + r["ref"] for r in rows)} for t, rows in train.items()},
        "eval": {s: {"format": kind, "rows": len(rows), "dropped_overlap": dropped[s],
                     "words": _lengths(r["input"] for r in rows)} for s, (kind, rows) in suites.items()},
        "overlaps": 0,
    }


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(canonical_json(r) + "\n" for r in rows))


def _write(out: Path, cfg, train, suites, summary) -> None:
    import datasets
    datasets.disable_progress_bars()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for task, rows in train.items():
            _jsonl(tmp / "train" / f"{task}.jsonl", ({"input": r["input"], "ref": r["ref"]} for r in rows))
        eval_rows = {}
        for name, (_, rows) in suites.items():
            eval_rows[name] = [{k: v for k, v in r.items() if k != "probe"} for r in rows]
            _jsonl(tmp / "eval" / f"{name}.jsonl", eval_rows[name])
        splits = {"train": datasets.Dataset.from_list([r for rows in train.values() for r in rows])}
        splits.update({name: datasets.Dataset.from_list(rows) for name, rows in eval_rows.items() if rows})
        datasets.DatasetDict(splits).save_to_disk(str(tmp / "hf"))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
        (tmp / "README.md").write_text(_card(summary))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _card(s: dict) -> str:
    lines = ["# e2wm embodied-experience dataset", "",
             "Built by `e2wm build-data` from collected episodes (MCTS plans and multi-agent exploration "
             "in the e2wm world model). Training rows use E2WM's four task formats; evaluation suites "
             "use E2WM's released file format. Lengths are in words.", "",
             "## Split", "",
             f"- training episodes: {s['split']['train_episodes']}; evaluation episodes: "
             f"{s['split']['eval_episodes']}",
             f"- held-out scenes: {', '.join(s['split']['eval_scenes']) or 'none'}",
             f"- held-out (unseen) activities: {', '.join(s['split']['unseen_activities']) or 'none'}", "",
             "## Training tasks", "", "| task | rows | weight | mean words | max words |",
             "|---|---|---|---|---|"]
    lines += [f"| {t} | {v['rows']} | {v['weight']} | {v['words']['mean']} | {v['words']['max']} |"
              for t, v in s["train"].items()]
    lines += ["", "## Evaluation suites", "",
              "| suite | format | rows | dropped (overlap with training) | mean words | max words |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {v['format']} | {v['rows']} | {v['dropped_overlap']} | {v['words']['mean']} | "
              f"{v['words']['max']} |" for n, v in s["eval"].items()]
    lines += ["", "Leak guard: no evaluation story, plan or question overlaps the training data "
              f"({s['config']['ngram']}-gram containment below {s['config']['threshold']}); "
              f"overlaps in the final suites: {s['overlaps']}.", "",
              "## Generating config", "", "```json", json.dumps(s["config"], indent=1), "```", ""]
    return "\n".join(lines)
