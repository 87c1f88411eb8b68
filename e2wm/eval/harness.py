"""`e2wm eval`: a model (and optionally a LoRA adapter) scored on suites in E2WM's released format.

Suite files (ours or E2WM's own) are read by `read_eval`, and how each is scored (its metric and
headline normalisation) by `read_spec`: its sidecar, E2WM's known name or its kind's default. Multiple
choice is scored by option likelihood (`scoring.choose_many`, `--mc-batch` items together), with both
normalisations reported; generation is decoded in batches (`generate`: beam search, 4 beams, 256 new
tokens, each item ending at its first newline, the first line kept) and scored by ROUGE, the contiguous
LCS ratio or exact match (plus executability when rows carry a "world"); perplexity's windows are dealt
out over the ranks. Writes `results.json` and `results.md` under `--out`.

The model loads in `--precision` and is placed by `--placement` (`e2wm.eval.placement`): a whole copy per
rank, or spread over a rank's devices. Under torchrun / deepspeed each rank scores rows rank, rank +
world, ...; the outcomes are gathered in row order, so 2 ranks write the same results.json as 1. The
device and backend come from DeepSpeed's accelerator.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import statistics
import time
from pathlib import Path

from e2wm.data.eval_format import SIDECAR, NORMS, read_eval, read_spec
from e2wm.errors import E2WMError
from e2wm.eval.config import EvalConfig
from e2wm.files import input_file, make_dir, output_dir, write_atomic, write_json
from e2wm.eval.executability import execute
from e2wm.eval.generate import generate, plan as gen_plan
from e2wm.eval.intervals import bootstrap, settings
from e2wm.eval.metrics import exact_match, lcs_ratio, rouge_items
from e2wm.eval import placement
from e2wm.eval.scoring import choose_many, option_scores_many, plan, prompts_cut


def suite_files(cfg: EvalConfig) -> list[Path]:
    files = []
    for s in cfg.suites:
        p = Path(s)
        if p.is_dir():
            found = sorted(x for x in p.iterdir() if x.suffix in (".json", ".jsonl") and x.is_file())
            have = {f.stem for f in found}
            lone = sorted(x.name for x in p.glob("*" + SIDECAR) if x.name[:-len(SIDECAR)] not in have)
            if lone:
                raise E2WMError(f"{p / lone[0]}: no suite file {lone[0][:-len(SIDECAR)]}.jsonl (or .json) beside "
                                f"this sidecar: rename a suite file and its sidecar together")
            files += found
        else:
            files.append(input_file(p, "suite file or directory"))
    stems = [f.stem for f in files]
    twice = sorted({x for x in stems if stems.count(x) > 1})
    if twice:
        raise E2WMError(f"two suite files named {', '.join(twice)}: pass one of each "
                        f"({', '.join(str(f) for f in files if f.stem in twice)})")
    if cfg.only:
        unknown = sorted(set(cfg.only) - {f.stem for f in files})
        if unknown:
            raise E2WMError(f"--only {', '.join(unknown)}: no such suite among {', '.join(f.stem for f in files)}")
        files = [f for f in files if f.stem in cfg.only]
    if not files:
        raise E2WMError(f"--suites {' '.join(cfg.suites)}: no suite files (*.json, *.jsonl) to evaluate")
    return files


def load(cfg: EvalConfig, adapter_shapes: dict | None = None):
    """The model (with `--adapter` on it) in `--precision`, placed by `--placement` (`e2wm.eval.placement`: on
    this rank's device, or spread over its devices), and its tokenizer. `adapter_shapes`:
    what `check_adapter_files` found (read again when not given)."""
    from e2wm.train.model import load_model, load_tokenizer
    model = load_model(cfg.model, placement.dtype(cfg.precision), field="--model",
                       device_map=placement.device_map(cfg), max_memory=placement.max_memory(cfg))
    if cfg.adapter:
        model = _with_adapter(model, cfg, adapter_shapes)
    return model.eval(), load_tokenizer(cfg.model, field="--model")


def check_adapter_files(cfg: EvalConfig) -> dict | None:
    """`--adapter`'s config and tensors checked without any model (LoRA pairs, ranks, finite values):
    their shapes, or None without an adapter."""
    from e2wm.train.adapters import check_adapter, read_config

    if not cfg.adapter:
        return None
    return check_adapter(*read_config(cfg.adapter))


def _with_adapter(model, cfg: EvalConfig, shapes: dict | None = None):
    from safetensors import SafetensorError

    from e2wm.train.adapters import load_onto

    shapes = shapes if shapes is not None else check_adapter_files(cfg)
    path = Path(cfg.adapter)
    try:
        return load_onto(model, path, shapes, f"--adapter {path} on {cfg.model}")
    except (RuntimeError, ValueError, KeyError, TypeError, OSError, SafetensorError) as e:
        why = " ".join(str(e).split())[:240] or type(e).__name__
        raise E2WMError(f"--adapter {path}: does not fit {cfg.model}: {why}") from None


def _mc(spec, rows, picks) -> dict:
    """Accuracy under both normalisations, the declared one the headline; per item, its 0/1 under that one."""
    right = {norm: [float(p[norm] == r["answer_list"].index(r["answer"])) for r, p in zip(rows, picks)]
             for norm in NORMS}
    by_norm = {norm: statistics.mean(v) for norm, v in right.items()}
    return {"metric": "accuracy", "normalisation": spec.normalisation,
            "accuracy": by_norm[spec.normalisation], "accuracy_by_norm": by_norm,
            "per_item": {"score": right[spec.normalisation]}}


def _gen(spec, rows, preds) -> dict:
    """The suite's declared metric (`spec`, a `SuiteSpec`) and exact match; executability where rows carry a world;
    per item, its value of the headline metric (`headline`); how many predictions are empty."""
    refs = [r["ref"] for r in rows]
    items = {"exact_match": list(map(exact_match, preds, refs))}
    if spec.metric == "lcs":
        items["lcs"] = list(map(lcs_ratio, preds, refs))
    elif spec.metric == "rouge":
        items.update(rouge_items(preds, refs))
    out: dict = {"metric": spec.metric, **{k: statistics.mean(v) for k, v in items.items()}}   # as `rouge` too
    if spec.world:
        runs = [execute(p, r["world"]) for p, r in zip(preds, rows)]
        out["executability"] = {"step_fraction": statistics.mean(e.fraction for e in runs),
                                "executable": statistics.mean(e.executable for e in runs),
                                "goal_success": statistics.mean(e.success for e in runs)}
    elif spec.metric == "rouge":
        out["executability"] = "not applicable (the rows carry no world)"
    out["examples"] = [{"prediction": p, "reference": r} for p, r in list(zip(preds, refs))[:3]]
    out["empty_predictions"] = sum(not p.strip() for p in preds)
    out["per_item"] = {"score": items[_HEADLINE_KEY.get(spec.metric, spec.metric)]}
    return out


def _summary(values: list[float]) -> dict:
    """A suite figure: its mean over the items and that mean's bootstrap interval (`intervals.bootstrap`);
    low and high are None for no items or a non-finite value (the mean then None in results.json)."""
    finite = bool(values) and all(map(math.isfinite, values))
    low, high = bootstrap(values) if finite else (None, None)
    return {"mean": statistics.mean(values) if values else None, "low": low, "high": high}


def _with_intervals(s: dict, nll: list[float]) -> dict:
    """The suite's entry `s` with its answer NLL and the intervals: the headline's from its per-item
    scores (where `_mc` / `_gen` gave them), and the per-item values last."""
    per_item = {**s.pop("per_item", {}), "answer_nll": nll}
    if "score" in per_item:
        head = _summary(per_item["score"])
        s["interval"] = None if head["low"] is None else {"low": head["low"], "high": head["high"], **settings()}
    return {**s, "answer_nll": _summary(nll), "per_item": per_item}


def _items(model, tok, kind: str, rows, cfg: EvalConfig, rank: int, world: int, calibration: dict | None = None
           ) -> list[tuple]:
    """Every row's outcome, in row order: (the option each normalisation picks, or the prediction; whether its
    prompt was cut to fit the model's positions; the answer's mean per-token NLL). The rows go in batches planned
    over the whole suite (`scoring.plan`, `generate.plan`), dealt out to the ranks (batch rank, rank + world,
    ...) and swapped, so each batch holds the items it holds in one process and 2 ranks write the bytes of 1.
    The answer NLL (`answer_nll` in results.json): for multiple choice, minus the correct option's "ln" score
    (its mean token log-probability); for generation, the same of the `ref`, scored as the one option of its row
    (the answer tokens of the training row f"{input} {ref}\\n" less its newline), `--mc-batch` rows together.
    `calibration`: the run's "Answer:" scores by option list (`choose_many`; a fresh dict if not given)."""
    if kind == "mc":
        items = [(r["input"], r["answer_list"]) for r in rows]
        groups = plan(model, tok, items, cfg.mc_batch)[rank::world]
        picks = choose_many(model, tok, items, {} if calibration is None else calibration, cfg.mc_batch, groups)
        cuts = prompts_cut(model, tok, items)
        mine = {i: ({norm: best for norm, (best, _) in picks[i].items()}, cuts[i],
                    -picks[i]["ln"][1][rows[i]["answer_list"].index(rows[i]["answer"])]) for g in groups for i in g}
        return _gathered(mine, len(rows), world)
    answers = [(r["input"], [r["ref"]]) for r in rows]
    groups = plan(model, tok, answers, cfg.mc_batch)[rank::world]   # first: a ref of no tokens fails fast
    scores = option_scores_many(model, tok, answers, cfg.mc_batch, groups=groups)
    nll = _gathered({i: -scores[i][0].mean for g in groups for i in g}, len(rows), world)
    groups = gen_plan(model, tok, [r["input"] for r in rows], cfg.gen_batch, cfg.max_new_tokens)[rank::world]
    texts = generate(model, tok, [r["input"] for r in rows], cfg.num_beams, cfg.max_new_tokens, cfg.gen_batch,
                     newline=cfg.stop == "newline", groups=groups)
    texts = _gathered({i: texts[i] for g in groups for i in g}, len(rows), world)
    return [(text, cut, x) for (text, cut), x in zip(texts, nll)]


def _gathered(mine: dict, n: int, world: int) -> list:
    """Every rank's {row: outcome} swapped, so each holds all `n` in row order."""
    if world > 1:
        import torch.distributed as dist
        parts = [None] * world
        dist.all_gather_object(parts, mine)
        mine = {i: v for part in parts for i, v in part.items()}
    return [mine[i] for i in range(n)]


def evaluate(cfg: EvalConfig, log=print) -> dict:
    from e2wm.train.model import check_model_spec
    out = output_dir(cfg.out, "--out", ours=("results.json", "results.md"), inputs=[
        ("--model", cfg.model), ("--adapter", cfg.adapter), ("--fisher", cfg.fisher), ("--ppl-corpus", cfg.ppl_corpus),
        *(("--suites", s) for s in cfg.suites)])
    check_model_spec(cfg.model, "--model")
    files = suite_files(cfg)
    suites = {f.stem: (f, *read_eval(f)) for f in files}    # every file parses before the model loads
    specs = {n: read_spec(f, kind, rows) for n, (f, kind, rows) in suites.items()}   # and its spec too
    texts = _ppl_texts(cfg)
    shapes = check_adapter_files(cfg)   # a broken adapter is found before the model loads
    with _ranks() as (rank, world):
        if rank:
            log = _quiet
        model, tok = load(cfg, shapes)
        if placement.describe(model):
            log(f"  the model spread over this rank's devices: {placement.describe(model)}")
        decoding = {"num_beams": cfg.num_beams, "max_new_tokens": cfg.max_new_tokens, "stop": cfg.stop,
                    "kept": "first line"}
        precision = placement.precision_name(placement.dtype(cfg.precision))
        results = {"model": cfg.model, "adapter": cfg.adapter, "precision": precision,
                   "decoding": decoding, "suites": {}}
        calibration: dict = {}   # "Answer:" scores by option list, for this run's model (`choose_many`)
        for name, (path, kind, rows) in suites.items():
            rows = rows[: cfg.limit] if cfg.limit else rows
            t0 = time.perf_counter()
            try:
                items = _items(model, tok, kind, rows, cfg, rank, world, calibration)
            except ValueError as e:   # an option or reference of no tokens, or no token before it
                raise E2WMError(f"{path}: cannot score its answers: {e}") from None
            cut = {"truncated_prompts": sum(c for _, c, _ in items)}   # prompts cut to fit the model's positions
            nll = [x for _, _, x in items]
            items = [p for p, _, _ in items]
            spec, source = specs[name]
            scored = {"spec_source": source, **(_mc if kind == "mc" else _gen)(spec, rows, items)}
            results["suites"][name] = _with_intervals(
                {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "format": kind,
                 "n": len(rows), **scored, **cut}, nll)
            log(f"  {name:<28} {kind}  n={len(rows):<5} " + _headline(results["suites"][name])
                + f"  ({time.perf_counter() - t0:.1f} s on {world} rank{'s' if world > 1 else ''})")
        if texts is not None:
            from e2wm.eval.perplexity import perplexity
            from e2wm.train.corpus import corpus_hash
            texts, checks = texts
            results["perplexity"] = {"corpus": cfg.ppl_corpus, "corpus_sha256": corpus_hash(texts), **checks,
                                     **perplexity(model, tok, texts, cfg.ppl_max_length, cfg.ppl_stride,
                                                 rank, world, log)}
            p = results["perplexity"]
            log(f"  perplexity {with_interval(p['ppl'], p['interval'], 3)} (e^NLL over {p['tokens']} tokens of "
                f"{p['documents']} documents, interval over documents; "
                f"E2WM's 2^NLL: {p['ppl_base2_e2wm']:.3f})")
        if rank == 0:   # the same bytes whatever the number of ranks: timings go to the log only
            make_dir(out)
            write_json(out / "results.json", results)
            write_atomic(out / "results.md", _markdown(results))
    return results


def _ranks():
    """`with _ranks() as (rank, world size)`: under torchrun / deepspeed, the process group on the accelerator's
    backend. Every rank holds the model (see `--placement`) and scores its share of each suite's items."""
    from e2wm.train.dist import is_distributed_env, process_group
    return process_group() if is_distributed_env() else contextlib.nullcontext((0, 1))


def _quiet(*_a, **_k) -> None:
    pass


def _ppl_texts(cfg: EvalConfig) -> tuple[list[str], dict[str, str]] | None:
    """The corpus's last `ppl_docs` documents, and how they were checked against the documents the Fisher
    (`--fisher`) and a `kl` run (recorded in the exported `--adapter` or `--model`) read: held-out
    perplexity means nothing on documents a regulariser pulled the model towards."""
    if not cfg.ppl_corpus:
        return None
    from e2wm.train.corpus import load_texts
    from e2wm.train.export import kl_corpus
    docs = load_texts(cfg.ppl_corpus, field="--ppl-corpus")
    checks = {"fisher": "not checked (no --fisher): the Fisher reads a corpus's first documents"}
    if cfg.fisher:
        meta = _fisher_meta(cfg.fisher)
        used = int(meta.get("samples", 0))   # checked a whole number >= 1 by fisher_metadata
        checks["fisher"] = _apart(cfg, docs, "the Fisher", f"--fisher {cfg.fisher}", 0, used,
                                  meta.get("corpus_sha256"))
    kl = []
    for flag, folder in (("--adapter", cfg.adapter), ("--model", cfg.model)):
        rec = kl_corpus(folder) if folder and Path(folder).is_dir() else None
        if rec:
            kl.append(_apart(cfg, docs, "the kl run", f"{flag} {folder}", rec["start"], rec["end"],
                             rec["corpus_sha256"]))
    checks["kl"] = "; ".join(kl) or "not applicable: neither --adapter nor --model is the export of a kl run"
    return docs[-cfg.ppl_docs:], checks


def _apart(cfg: EvalConfig, docs: list[str], who: str, artefact: str, start: int, end: int, sha256) -> str:
    """How the perplexity documents stand to documents [start, end) that `who` (`artefact`) read. Only
    if those documents are the corpus's own there (same sha256) can they be among perplexity's; they
    must not reach into its last `ppl_docs`."""
    from e2wm.train.corpus import corpus_hash
    if corpus_hash(docs[start:end]) != sha256:
        return f"disjoint: {who} read another corpus"
    n, first = len(docs), max(0, len(docs) - cfg.ppl_docs)
    if first < end:
        fix = f"lower --ppl-docs to {n - end} or less" if n > end else "use another --ppl-corpus"
        raise E2WMError(f"--ppl-corpus {cfg.ppl_corpus}: its last {cfg.ppl_docs} of {n} documents ({first}..{n - 1}) "
                        f"overlap the documents {who} read ({artefact}: {start}..{end - 1}) in "
                        f"{max(first, start)}..{end - 1}; {fix}")
    return f"disjoint: {who} read documents {start}..{end - 1}"


def _fisher_meta(spec: str) -> dict:
    from e2wm.train.fisher_io import fisher_metadata, fisher_path, open_fisher
    with open_fisher(spec, "--fisher") as fh:
        return fisher_metadata(fh, fisher_path(spec), "--fisher")[0]


_HEADLINE_KEY = {"rouge": "rougeL"}   # the key of a suite's headline value, by metric (else the metric's name)
AXIS_NAMES = {"rouge": "ROUGE-L F", "lcs": "LCS ratio", "exact_match": "exact match"}   # charts' y axes


def headline(s: dict) -> tuple[str, float]:
    """The suite's headline (label, value): accuracy under its default normalisation, ROUGE-L, LCS
    or exact match (its per-item values: `per_item.score`)."""
    m = s["metric"]
    if m == "accuracy":
        return f"accuracy ({s['normalisation']})", s["accuracy"]
    key = _HEADLINE_KEY.get(m, m)
    return key, s[key]


def axis_name(s: dict) -> str:
    """The headline metric as a chart's axis names it: "accuracy (ln)", "ROUGE-L F", "LCS ratio", "exact match"."""
    return headline(s)[0] if s["metric"] == "accuracy" else AXIS_NAMES[s["metric"]]


def with_interval(value, interval, digits: int = 4) -> str:
    """`value` and, where there is one, its interval: "0.5000 [0.4000, 0.6000]"."""
    text = f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"
    if isinstance(interval, dict) and interval.get("low") is not None:
        text += f" [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"
    return text


def _headline(s: dict) -> str:
    label, value = headline(s)
    return (f"{label} {with_interval(value, s.get('interval'), 3)}, answer NLL "
            f"{with_interval(s['answer_nll']['mean'], s['answer_nll'], 3)}")


def _markdown(r: dict) -> str:
    level = f"{settings()['level']:.0%}"
    lines = [f"# e2wm eval: {r['model']}" + (f" + {r['adapter']}" if r["adapter"] else ""), "",
             f"Each value with its {level} percentile bootstrap interval over the items [low, high]. Answer NLL: "
             "the mean over items of the reference answer's (multiple choice: the correct option's) mean "
             "per-token negative log-likelihood after the prompt (nats; lower is better).", "",
             "| suite | n | metric | value | answer NLL |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {s['n']} | {headline(s)[0]} | {with_interval(headline(s)[1], s.get('interval'))} | "
              f"{with_interval(s['answer_nll']['mean'], s['answer_nll'])} |" for n, s in r["suites"].items()]
    if "perplexity" in r:
        p = r["perplexity"]
        lines.append(f"| perplexity ({p['corpus']}) | {p['documents']} docs | e^NLL | "
                     f"{with_interval(p['ppl'], p.get('interval'))} | |")
        lines.append(f"| (E2WM's 2^NLL, for comparison only) | | 2^NLL | {p['ppl_base2_e2wm']:.4f} | |")
    return "\n".join(lines) + "\n"
