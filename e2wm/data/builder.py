"""`e2wm build-data`: collected episodes -> training rows per task and evaluation suites, leak-checked.

Output (written whole by `atomic_dir`; an existing directory is never overwritten):
  train/<task>.jsonl     training rows {"task", "input", "ref", "weight"}; the text is f"{input} {ref}\n"
  eval/<suite>.jsonl     E2WM's released evaluation format: {"input", "ref"} or
                         {"input", "answer_list", "answer"}, one JSON object per line
  eval/<suite>.suite.yaml its spec, which `e2wm eval` scores it by: kind, metric, normalisation, world
  eval/heldout_<task>.*  a slice of each training task's rows never trained on (`e2wm.data.heldout`),
                         in the task's format, leak-checked disjoint from training
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
from e2wm.data.activity_card import activity_rows, card_lines, partial_goal_line
from e2wm.data.config import DataConfig
from e2wm.data.eval_format import SIDECAR, spec_text
from e2wm.data import heldout, suites as suite_registry
from e2wm.data.health import first_room_mismatch, suite_health, task_health
from e2wm.data.leak import LeakGuard
from e2wm.data.prompts import Templates
from e2wm.data.split import collection_activities, load_episodes, split
from e2wm.data.suites.options import INTERNAL
from e2wm.data.suites.plans import world_ref
from e2wm.data.tasks import INTERNAL as TASK_INTERNAL
from e2wm.data.tasks import activity_recognition, counting, object_path, plan_generation
from e2wm.data.views import is_plan, names_goal_objects, pair, plans
from e2wm.errors import E2WMError
from e2wm.files import atomic_dir, dumps, output_dir
from e2wm.world.activities import ACTIVITIES, UNSEEN_NAMES

TASKS = (plan_generation, activity_recognition, counting, object_path)


def build_data(episodes_dir: str | Path, out: str | Path, cfg: DataConfig, log=print,
               tokenizer: str | None = None) -> dict:
    out = output_dir(out, "--out", fresh=True, inputs={"--episodes": episodes_dir, "--tokenizer": tokenizer})
    tok = _tokenizer(tokenizer) if tokenizer else None
    eps = load_episodes(episodes_dir)
    chosen = collection_activities(episodes_dir)
    sp = split(eps, cfg.eval_fraction, cfg.unseen_fraction, cfg.seed)
    t = Templates(cfg.template)
    training, held, train, held_rows = training_rows(sp.train, cfg, t)
    log(f"{len(eps)} episodes: {len(training)} for training, {len(sp.train) - len(training)} held out of "
        f"training, {len(sp.eval)} for evaluation ({len(sp.eval_scenes)} held-out scenes, "
        f"{len(sp.unseen_activities)} held-out activities)")
    guard = LeakGuard([f"{r['input']} {r['ref']}" for rows in train.values() for r in rows],
                      cfg.ngram, cfg.threshold)
    pairs = {pair(e) for e in plans(training)}
    train_keys = {e.key for e in training}
    suites: dict[str, tuple[str, list[dict]]] = {}
    specs = dict(suite_registry.SPECS)
    dropped: dict[str, dict] = {}
    for name, kind in suite_registry.SUITES.items():
        rows = suite_registry.build(name, sp.eval, training, random.Random(f"{cfg.seed}:{name}"), t)
        dropped[name] = _guard(name, rows, guard, pairs, train_keys)
        suites[name] = (kind, rows)
    text = "\n".join(f"{r['input']} {r['ref']}" for rows in train.values() for r in rows)
    for task, rows in held_rows.items():
        name = heldout.suite_name(task)
        dropped[name] = _guard(name, rows, guard, pairs, train_keys, text)
        if rows:
            suites[name], specs[name] = ("gen", rows), heldout.SPECS[task]
    guard.check({name: [r for r in rows if "pair" not in r] for name, (_, rows) in suites.items()})
    _check_heldout({n: rows for n, (_, rows) in suites.items() if n.startswith(heldout.PREFIX)}, train,
                   text, train_keys, pairs)
    small = [f"{name} ({len(rows)})" for name, (_, rows) in suites.items()
             if len(rows) < cfg.min_suite_rows and name in suite_registry.SUITES]
    if small:
        raise E2WMError(f"{episodes_dir}: too few evaluation items for suite(s) {', '.join(small)}; "
                        f"min_suite_rows is {cfg.min_suite_rows}: collect more episodes or lower it")
    summary = _summary(cfg, sp, eps, training, held, train, suites, dropped, chosen, tok)
    _write(out, cfg, train, suites, specs, summary)
    return summary


def training_rows(episodes, cfg: DataConfig, t: Templates):
    """(training episodes, task -> held-out episode keys, task -> training rows, task -> held-out rows) of
    the training split's `episodes`: every held-out episode (`heldout.choose`) is left out of training
    entirely, so no training row asks about one or shows one as an exemplar. Rows keep their provenance
    ("episode", "query"); held-out rows also what the guard reads (`_heldout_rows`)."""
    held = _hold_out(episodes, cfg, t)
    out = set().union(*held.values())
    training = [e for e in episodes if e.key not in out]
    train = {m.TASK: m.build(training, random.Random(f"{cfg.seed}:{m.TASK}"), t,
                             weight=cfg.weights.get(m.TASK, m.WEIGHT)) for m in TASKS}
    held_rows = {m.TASK: _heldout_rows(m, [e for e in episodes if e.key in held[m.TASK]], cfg, t)
                 for m in TASKS if held[m.TASK]}
    return training, held, train, held_rows


def _hold_out(episodes, cfg: DataConfig, t: Templates) -> dict[str, set[str]]:
    """Task -> the keys of its held-out episodes (`heldout.choose`), among those giving it a row."""
    if not cfg.heldout_rows:
        return {m.TASK: set() for m in TASKS}
    eligible = {m.TASK: {r["episode"] for r in m.build(episodes, random.Random(f"{cfg.seed}:{m.TASK}"), t)}
                for m in TASKS}
    return heldout.choose(episodes, eligible, cfg.heldout_rows, cfg.seed)


def _heldout_rows(m, episodes, cfg: DataConfig, t: Templates) -> list[dict]:
    """Task `m`'s rows of its held-out episodes, in its training format, with what the guard reads:
    the probe (query and answer), and for plans the (activity, plan) pair (plan generation: and the
    world its plans are run in)."""
    by_key = {e.key: e for e in episodes}
    rows = m.build(episodes, random.Random(f"{cfg.seed}:heldout:{m.TASK}"), t,
                   weight=cfg.weights.get(m.TASK, m.WEIGHT))
    for r in rows:
        ep = by_key[r["episode"]]
        r["probe"] = f"{r['query']} {r['ref']}"
        if is_plan(ep):
            r["pair"] = list(pair(ep))
        if heldout.SPECS[m.TASK].world:
            r["world"] = world_ref(ep)
    return rows


def _check_heldout(suites: dict[str, list[dict]], train: dict[str, list[dict]], text: str, train_keys: set,
                   pairs: set) -> None:
    """Raise unless every held-out row is disjoint from training: its episode trains no task, its
    (activity, plan) pair is no training plan's, its input is no training row's and its query (the
    question without exemplars) occurs in no training row's `text` (inputs, exemplars included, and refs)."""
    inputs = {r["input"] for rows in train.values() for r in rows}
    for name, rows in suites.items():
        for i, r in enumerate(rows):
            why = ("its episode trains" if r["episode"] in train_keys else
                   "its (activity, plan) pair trains" if "pair" in r and tuple(r["pair"]) in pairs else
                   "its input is a training row's" if r["input"] in inputs else
                   "its query is in the training rows" if r["query"] in text else None)
            if why:
                raise E2WMError(f"leak guard: held-out item {name}#{i} is not disjoint from training: {why} "
                                f"({r['query'][:60]!r})")


def _guard(name: str, rows: list[dict], guard: LeakGuard, pairs: set, train_keys: set,
           text: str | None = None) -> dict:
    """Drop (in place) the rows that leak or repeat; the counts by reason.

    A row from a plan carries its (activity, plan) pair and leaks when training has that pair;
    story rows leak by n-gram containment (`LeakGuard`); any row of a training episode leaks; with
    the training `text` (held-out suites), so does a row whose query occurs whole in it (counted as
    n-gram overlap); a row repeating an earlier query of its suite (query and answer, for housework)
    is dropped."""
    counts = {"pair": 0, "episode": 0, "ngram": 0, "repeat": 0}
    seen, keep = set(), []
    for r in rows:
        key = r["probe"] if name == "housework_qa" else r["query"]
        if r.get("episode") in train_keys:
            counts["episode"] += 1
        elif "pair" in r and tuple(r["pair"]) in pairs:
            counts["pair"] += 1
        elif (text is not None and r["query"] in text) or ("pair" not in r and guard.leaks(r["probe"])):
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


def _summary(cfg, sp, eps, training, held, train, suites, dropped, chosen, tok) -> dict:
    trained = sorted({e.activity for e in plans(training)})
    library = [a.name for a in ACTIVITIES]
    scope = library if chosen is None else [a for a in library if a in chosen]
    plan_eps = [e for e in eps if e.kind == "plan" and e.success]
    acts = activity_rows(plans(eps), plans(training), set(sp.unseen_activities), chosen)
    held_out = {}
    for task, keys in held.items():
        name = heldout.suite_name(task)
        held_out[task] = {"suite": name if name in suites else None, "unit": heldout.UNIT[task],
                          "episodes": len(keys), "rows": len(suites[name][1]) if name in suites else 0,
                          "dropped": dropped.get(name, {}), "disjoint_from_training": "checked"}
    return {
        "config": cfg.to_dict(),
        "engine": sorted({e.engine for e in eps}),
        "split": {"train_episodes": len(training), "heldout_episodes": len(sp.train) - len(training),
                  "eval_episodes": len(sp.eval),
                  "eval_scenes": list(sp.eval_scenes), "unseen_activities": list(sp.unseen_activities)},
        "coverage": {"library": len(library),
                     "subset": None if chosen is None else {
                         "activities": len(chosen), "library": len(scope),
                         "held_out_set": len([a for a in chosen if a in UNSEEN_NAMES])},
                     "trained": len(set(trained) & set(scope)),
                     "unseen": len(set(scope) & set(sp.unseen_activities)),
                     "missing": [a for a in scope if a not in trained and a not in sp.unseen_activities],
                     "activity_scene_pairs": len({(e.activity, e.scene) for e in plans(eps)})},
        "plans": {"successful": len(plan_eps),
                  "without_goal_object": sum(not names_goal_objects(e) for e in plan_eps),
                  "first_room_mismatch": round(sum(map(first_room_mismatch, plans(eps)))
                                               / max(len(plans(eps)), 1), 3),
                  "partial_goal": sum(r["partial_goal_plans"] for r in acts)},
        "activities": acts,
        "train": {task: task_health(task, rows, tok) for task, rows in train.items()},
        "heldout": held_out,
        "eval": {s: suite_health(kind, rows, dropped[s], tok) for s, (kind, rows) in suites.items()},
        "overlaps": 0,
    }


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(canonical_json(r) + "\n" for r in rows))


def _write(out: Path, cfg, train, suites, specs, summary) -> None:
    import datasets
    datasets.disable_progress_bars()
    train = {task: [{k: v for k, v in r.items() if k not in TASK_INTERNAL} for r in rows]
             for task, rows in train.items()}
    with atomic_dir(out) as tmp:
        for task, rows in train.items():
            _jsonl(tmp / "train" / f"{task}.jsonl", rows)
        eval_rows = {}
        for name, (_, rows) in suites.items():
            eval_rows[name] = [{k: v for k, v in r.items() if k not in (*INTERNAL, "task", "weight")}
                               for r in rows]
            _jsonl(tmp / "eval" / f"{name}.jsonl", eval_rows[name])
            (tmp / "eval" / f"{name}{SIDECAR}").write_text(spec_text(name, specs[name]))
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
             *_coverage(cov),
             f"- (activity, apartment) kinds of goal planned: {cov['activity_scene_pairs']}",
             f"- successful plans: {pl['successful']}; without a goal object in their lines: "
             f"{pl['without_goal_object']} (never used)",
             f"- plans whose opening room walk is not the first object's room: {pl['first_room_mismatch']:.1%}",
             partial_goal_line(s["activities"]),
             "", "## Split", "",
             f"- training episodes: {s['split']['train_episodes']}; held out of training (the heldout_* "
             f"suites): {s['split']['heldout_episodes']}; evaluation episodes: {s['split']['eval_episodes']}",
             f"- held-out scenes: {', '.join(s['split']['eval_scenes']) or 'none'}",
             f"- held-out (unseen) activities: {', '.join(s['split']['unseen_activities']) or 'none'}", "",
             "## Training tasks", "", "| task | rows | weight | mean length | max length | answers |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {t} | {v['rows']} | {v['weight']} | {_len(v, 'mean')} | {_len(v, 'max')} | "
              f"{_spread(v.get('answers'))} |" for t, v in s["train"].items()]
    lines += ["", "## Held-out training slices", "",
              "Rows of each training task never trained on, in its training format, scored by `e2wm eval` as the "
              "suite `heldout_<task>` (a measure of fit on the training distribution). The unit held out is "
              "the episode, out of every task that reads it (a plan goes with every plan of the same text or "
              f"question); at most {s['config']['heldout_rows']} rows and a quarter of a task's episodes.", "",
              "| task | suite | metric | episodes held out | rows | dropped | disjoint from training |",
              "|---|---|---|---|---|---|---|"]
    for task, v in s["heldout"].items():
        d = v["dropped"]
        lines.append(f"| {task} | {v['suite'] or 'none'} | {heldout.SPECS[task].metric} | {v['episodes']} | "
                     f"{v['rows']} | {sum(d.values()) if d else 0} | {v['disjoint_from_training']} |")
    lines += ["", "Disjoint from training, checked: no held-out row's episode or (activity, plan) pair trains "
              "any task, no held-out input is a training input, and no held-out query occurs in the training "
              "rows (their exemplars included).", "", "## Evaluation suites", "",
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
              *card_lines(s["activities"]), "",
              "## Generating config", "", "```json", json.dumps(s["config"], indent=1), "```", ""]
    return "\n".join(lines)


def _coverage(cov: dict) -> list[str]:
    notes = ([f"{cov['unseen']} held out as unseen"] if cov["unseen"] else []) + (
        [f"missing, with no training plan: {', '.join(cov['missing'])}"] if cov["missing"] else [])
    missing = f" ({'; '.join(notes)})" if notes else ""
    sub = cov.get("subset")
    if sub is None:
        return [f"- library activities trained on: {cov['trained']} / {cov['library']}{missing}"]
    extra = f", and {sub['held_out_set']} of its held-out set" if sub["held_out_set"] else ""
    return [f"- the collection plans a subset of the activity library by design (`collect.activities`): "
            f"{sub['library']} of its {cov['library']} activities{extra}",
            f"- activities of that subset trained on: {cov['trained']} / {sub['library']}{missing}"]


def _len(v: dict, key: str) -> str:
    w = v["words"]
    return f"{w[key]} ({w['tokens'][key]} tok)" if "tokens" in w else str(w[key])


def _spread(d) -> str:
    return " ".join(f"{k}:{x:.0%}" for k, x in d.items()) if d else ""


def _pct(x) -> str:
    return "" if x is None else f"{x:.1%}"
