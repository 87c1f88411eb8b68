"""`e2wm pipeline`: world model to report in one command, resumable stage by stage.

Stages, each writing one folder under OUT:
  collect  episodes on Ray (e2wm collect)                 -> OUT/collect
  data     training tasks and evaluation suites           -> OUT/data
  model    the base model (made here, or a given one)     -> OUT/model
  fisher   Fisher diagonal on general text                -> OUT/fisher
  train    one run per entry of `runs` (regularisers)     -> OUT/train/RUN
  eval     the base model and every run: suites, perplexity -> OUT/eval/NAME
  report   the runs side by side, with charts             -> OUT/report
This module only wires the stages' own entry points together. With a `sweep` section the train stage runs
every run of `cfg.expanded_runs()` (one after another, each on all the stage's ranks), the eval stage also
every snapshot (OUT/eval/RUN@step-K), and the report lists every evaluated point in OUT/report/runs.json.
The train and eval stages record each finished run and evaluation (State.mark_part): a resumed stage skips them.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from e2wm.config import to_plain
from e2wm.errors import E2WMError
from e2wm.files import make_dir, output_dir, write_atomic
from e2wm.pipeline.config import STAGES, PipelineConfig
from e2wm.pipeline.state import STATE, State, config_hash


def pipeline(cfg: PipelineConfig, stages=STAGES, log=print, force: bool = False, redo=()) -> Path:
    """Run (or resume) `stages` of the pipeline in order; returns OUT. `redo`: stages to run again from
    scratch, with every stage after them (see `redone`)."""
    check(cfg, stages, force, redo)
    out = Path(cfg.out)
    state = State(out)
    hashes = _hashes(cfg)
    make_dir(out)
    for stage in redone(redo):   # only once every check passed
        if (out / stage).exists():
            log(f"[pipeline] --redo: removing {out / stage}")
            shutil.rmtree(out / stage)
        state.forget(stage)
    if cfg.note:
        log(cfg.note)
    t_all = time.perf_counter()
    for i, stage in enumerate(STAGES, 1):
        if stage not in stages:
            continue
        h = hashes[stage]
        if state.check(stage, h):
            log(f"[pipeline] {i}/{len(STAGES)} {stage}: done earlier, skipped")
            continue
        log(f"[pipeline] {i}/{len(STAGES)} {stage} ...")
        state.mark(stage, h, False)
        t = time.perf_counter()
        info = RUNNERS[stage](cfg, out, log) or {}
        state.mark(stage, h, True, seconds=round(time.perf_counter() - t, 1), **info)
        log(f"[pipeline] {i}/{len(STAGES)} {stage}: done in {time.perf_counter() - t:.0f} s")
    done = "; report: " + str(out / "report" / "report.md") if "report" in stages else ""
    log(f"[pipeline] finished in {time.perf_counter() - t_all:.0f} s{done}")
    return out


def redone(redo) -> list[str]:
    """The stages `--redo` runs again: the named ones and every later one, which reads their output (the
    stages form a chain: collect, data, model, fisher, train, eval, report)."""
    unknown = [s for s in redo if s not in STAGES]
    if unknown:
        raise E2WMError(f"--redo: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    first = min((STAGES.index(s) for s in redo), default=len(STAGES))
    return list(STAGES[first:])


def check(cfg: PipelineConfig, stages=STAGES, force: bool = False, redo=()) -> list[str]:
    """What `pipeline` checks before it creates OUT or its state file (so that a bad config or an unreachable
    --address leaves nothing behind, and nothing fails after an hour of collection), writing nothing,
    starting no Ray and loading no model; one line per thing checked."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise E2WMError(f"--stages: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    out = output_dir(cfg.out, "--out", ours=(STATE,), force=force,
                     inputs={"model.base": cfg.model.base, "corpus": cfg.corpus})
    lines = [f"out {out}: " + ("a pipeline's folder, resumed" if (out / STATE).exists() else "usable")]
    if set(stages) & {"model", "fisher", "train", "eval"}:
        from e2wm.train.corpus import check_corpus
        check_corpus(cfg.corpus, "corpus")
        docs, parts = _general(cfg)
        lines += [f"corpus {cfg.corpus}: {len(docs)} documents; " + ", ".join(
            f"{name} {r.start}..{r.stop - 1}" for name, r in parts.items() if len(r)), _check_model(cfg)]
    if "train" in stages:
        runs = cfg.expanded_runs()
        if cfg.sweep.active:
            snaps = cfg.sweep.snapshots
            lines.append(f"sweep: {len(runs)} run(s) from {len(cfg.runs)} arm(s), trained one after another on "
                         f"the stage's rank(s)" + (f"; snapshots at steps {', '.join(map(str, sorted(snaps)))}, "
                                                   f"each evaluated" if snaps else ""))
        lines += [_check_run(cfg, name) for name in runs]
    state, hashes = State(out), _hashes(cfg)
    # a stage to run whose config changed is refused; the others only need to have finished
    again = redone(redo)
    missing = [s for s in again if s not in stages and state.data["stages"].get(s)]
    if missing:   # its old output would stay behind, made from what is being redone
        raise E2WMError(f"--redo: stage(s) {', '.join(missing)} read what is redone and ran before; add them "
                        f"to --stages")
    done = {s: False if s in again else state.check(s, hashes[s]) if s in stages else state.finished(s, hashes[s])
            for s in STAGES}
    if again:
        lines.append(f"redo: {', '.join(again)} (their outputs in {out} are removed first)")
    for i, stage in enumerate(STAGES):
        missing = [s for s in STAGES[:i] if not done[s] and s not in stages]
        if stage in stages and not done[stage] and missing:
            raise E2WMError(f"stage {stage} needs stage(s) {', '.join(missing)}, not finished in {out}; "
                            f"add them to --stages")
    todo = [s for s in STAGES if s in stages and not done[s]]
    job = _collect_job(cfg, out)   # checks the address's form
    if "collect" in todo:
        from e2wm.collect.run import prepare
        units = prepare(job, force=True)[1]
        lines.append(f"collect: {len(units)} units")
    if cfg.address not in ("local", "auto") and ("collect" in todo or cfg.launcher == "ray"
                                                 and {"fisher", "train", "eval"} & set(todo)):
        from e2wm.collect.run import probe_address
        probe_address(cfg.address)   # within seconds, where ray.init would wait minutes
        lines.append(f"address {cfg.address}: reachable")
    lines.append(f"stages to run: {', '.join(todo) or 'none'} (launcher {cfg.launcher}, {cfg.workers} rank(s)"
                 + (", one GPU each, not checked here)" if cfg.gpus else ")"))
    return lines


def _check_model(cfg: PipelineConfig) -> str:
    from e2wm.train.model import check_model_spec, is_hub_id
    base = cfg.model.base
    if base == "local":
        return "model.base local: made here from the data and the corpus"
    check_model_spec(base, "model.base")
    if is_hub_id(base):
        return f"model.base {base}: a hub id, not checked offline (the model stage needs the hub or its cache)"
    return f"model.base {base}: found"


def _check_run(cfg: PipelineConfig, name: str) -> str:
    """Run `name`'s batch arithmetic and DeepSpeed config on the stage's world size, which `e2wm train`
    would otherwise check only after collection and the Fisher."""
    from e2wm.train.ds_config import deepspeed_config, zero_stage
    tc = cfg.train_config(name, "OUT", "MODEL")
    try:
        ds = deepspeed_config(tc, cfg.workers)
    except E2WMError as e:
        raise E2WMError(f"runs.{name}: {e}") from None
    o = tc.optim
    return (f"runs.{name}: {o.global_batch_size} rows per step ({tc.data.sampling}) over {cfg.workers} rank(s) × "
            f"{ds['gradient_accumulation_steps']} micro-batch(es) of <= {o.micro_batch_size}; DeepSpeed "
            f"{tc.deepspeed.config}, ZeRO-{zero_stage(ds)}, train_batch_size {ds['train_batch_size']}")


def _hashes(cfg: PipelineConfig) -> dict[str, str]:
    """Each stage's hash covers its own section and the hashes of the stages before it."""
    c = to_plain(cfg)
    own = {"collect": cfg.collect.job_dict(),   # what determines the episodes, not where or how fast
           "data": c["data"], "model": [c["model"], c["corpus"]] + _pretrain_docs(cfg),
           "fisher": [_fisher_own(c["fisher"], cfg.fisher_modules()), c["corpus"]],
           # a kl run's documents end where perplexity's begin
           "train": [c["train"], c["runs"]] + ([_ppl_docs(cfg)] if "kl" in cfg.run_kinds().values() else [])
           + ([c["sweep"]] if cfg.sweep.active else []),   # without one, the hashes of before sweeps
           "eval": [c["eval"], c["corpus"]], "report": []}
    out, prev = {}, ""
    for s in STAGES:
        prev = out[s] = config_hash(s, own[s], prev)
    return out


def _fisher_own(section: dict, modules: str) -> dict:
    """What of the fisher section fixes F: gradient checkpointing only trades memory for time (F is unchanged),
    and precision is hashed only where it is not fp32, so pipelines finished before these fields existed
    keep their hashes and resume."""
    own = {k: v for k, v in section.items() if k != "gradient_checkpointing"}
    if own.get("precision") == "fp32":
        del own["precision"]
    return {**own, "modules": modules}


def _pretrain_docs(cfg: PipelineConfig) -> list:
    """The documents a local model's tokenizer and pretraining read where they are a slice of their own (they then move with
    fisher.max_samples and eval.ppl_docs, so the model stage's hash must hold them); [] otherwise, so that
    pipelines on a small corpus keep the hashes they had."""
    if cfg.model.base != "local":   # (without pretraining they still train the tokenizer)
        return []
    from e2wm.train.corpus import pretrain_is_own
    try:
        slices = _general(cfg)[1]
    except E2WMError:   # a corpus too small: the model stage says so when it runs
        return []
    return [[slices["pretrain"].start, slices["pretrain"].stop]] if pretrain_is_own(slices) else []


# ---------------------------------------------------------------- stages

def _collect_job(cfg: PipelineConfig, out: Path):
    from dataclasses import replace
    return replace(cfg.collect, out=str(out / "collect"), address=cfg.address)


def _collect(cfg: PipelineConfig, out: Path, log) -> dict:
    from e2wm.collect.run import collect
    from e2wm.progress import progress
    job = _collect_job(cfg, out)
    with progress(rate=True) as bar:
        task = bar.add_task("  collecting", total=None)
        stats = collect(job, progress=lambda k, total: bar.update(task, total=total, advance=k),
                        log=bar.console.print, force=True)
    log(f"  {stats['episodes']} episodes, {stats['failures']} failed units")
    return {"episodes": stats["episodes"]}


def _data(cfg: PipelineConfig, out: Path, log) -> dict:
    import shutil

    from e2wm.data.builder import build_data
    target = out / "data"
    if target.exists():   # a build that finished but was not recorded: build-data writes whole folders
        shutil.rmtree(target)
    s = build_data(out / "collect", target, cfg.data, log=lambda *a: log("  " + " ".join(map(str, a))))
    return {"train_rows": sum(v["rows"] for v in s["train"].values())}


def _ppl_docs(cfg: PipelineConfig) -> int:
    return cfg.eval_config("OUT", "MODEL", None).ppl_docs


def _general(cfg: PipelineConfig) -> tuple[list[str], dict[str, range]]:
    """The general corpus and its slices, in this order (`e2wm.train.corpus.general_slices`): "fisher" the
    first fisher.max_samples documents, "kl" a kl run's, "pretrain" local pretraining's, "ppl" the last
    eval.ppl_docs; the kl and pretraining slices share what lies between the Fisher's and perplexity's, half
    each. All four are disjoint on a corpus large enough (builtin:stdlib); on a smaller one (builtin:pydoc) kl
    reads everything between, and pretraining all but perplexity's documents. What a regulariser or pretraining
    read must not score the held-out perplexity."""
    from e2wm.train.corpus import general_slices, load_texts
    docs = load_texts(cfg.corpus)
    ppl = _ppl_docs(cfg)
    slices = general_slices(len(docs), cfg.fisher.max_samples, ppl)
    fisher = len(slices["fisher"])
    if fisher < 1:
        raise E2WMError(f"corpus {cfg.corpus}: {len(docs)} documents leave none for the Fisher after "
                        f"eval.ppl_docs={ppl}")
    kl = [name for name, kind in cfg.run_kinds().items() if kind == "kl"]
    if kl and not slices["kl"]:
        raise E2WMError(f"corpus {cfg.corpus}: {len(docs)} documents leave none for the kl run(s) {', '.join(kl)} "
                        f"between the Fisher's first {fisher} (fisher.max_samples={cfg.fisher.max_samples}) and "
                        f"perplexity's last {ppl} (eval.ppl_docs); lower either or use a larger corpus")
    return docs, slices


def model_path(cfg: PipelineConfig, out: Path) -> str:
    return str(out / "model") if cfg.model.base == "local" else cfg.model.base


def _model(cfg: PipelineConfig, out: Path, log) -> dict:
    if cfg.model.base != "local":
        from e2wm.train.model import check_model_spec
        check_model_spec(cfg.model.base, "model.base")
        log(f"  base model: {cfg.model.base}")
        return {"base": cfg.model.base}
    from e2wm.pipeline.local_model import make_local_model, task_texts
    from e2wm.train.corpus import pretrain_is_own
    docs, slices = _general(cfg)
    r, own = slices["pretrain"], pretrain_is_own(slices)
    log(f"  general text: documents {r.start}..{r.stop - 1} of {cfg.corpus} (" + (
        "disjoint from the Fisher's, kl's and perplexity's)" if own else
        "all but perplexity's: too few documents for a slice of pretraining's own, also the Fisher's and kl's)"))
    info = make_local_model(cfg.model, task_texts(out / "data"), docs[r.start:r.stop], out / "model", log)
    return {**info, "pretrain_documents": [r.start, r.stop], "pretrain_disjoint": own}


def _fisher(cfg: PipelineConfig, out: Path, log) -> dict:
    from e2wm.pipeline.launch import run_stage
    n = len(_general(cfg)[1]["fisher"])
    run_stage("fisher", cfg.fisher_config(str(out), model_path(cfg, out), n), **cfg.launch(), log=log)
    return {"samples": n}


def _exported(folder: Path) -> bool:
    """Whether `folder` is a complete export (it appears whole, with its marker)."""
    from e2wm.train.export import MARKER
    return (folder / MARKER).is_file()


def _train(cfg: PipelineConfig, out: Path, log) -> dict:
    """Every run of `cfg.expanded_runs()`, one after another, each on the stage's ranks; a run recorded
    finished with the same config, whose export is there, is skipped (a killed stage resumes at the run it
    was in, which resumes from its own checkpoint)."""
    import yaml

    from e2wm.pipeline.launch import run_stage
    make_dir(out / "train")
    kl_docs = _general(cfg)[1]["kl"]
    state, runs = State(out), cfg.expanded_runs()
    for i, name in enumerate(runs, 1):
        tc = cfg.train_config(name, str(out), model_path(cfg, out), kl_docs)
        h = config_hash("train run", to_plain(cfg.train_config(name, "OUT", "MODEL", kl_docs)))
        where = f" ({i}/{len(runs)})" if len(runs) > 1 else ""
        if state.part_done("train", name, h) and _exported(Path(tc.out) / ("adapter" if tc.lora.enabled else "model")):
            log(f"  run {name}{where}: done earlier, skipped")
            continue
        # for the record, and for `e2wm train --config` by hand
        write_atomic(out / "train" / f"{name}.yaml", yaml.safe_dump(tc.to_dict(), sort_keys=False))
        log(f"  run {name}{where}: {tc.regularizer.kind}, lora {'on' if tc.lora.enabled else 'off'}")
        run_stage("train", tc, **cfg.launch(), log=log)
        state.mark_part("train", name, h)
    return {"runs": list(runs)}


def _eval_points(cfg: PipelineConfig, out: Path) -> list[dict]:
    """What the eval stage evaluates, in order: the base model, then each run's snapshots (if taken) and its
    final export. Each: name (its folder under OUT/eval), model, adapter, and what the report records (run, arm,
    kind, seed, values, step: None for a final export, whose step its marker says; snapshot: its folder)."""
    from e2wm.train.recipe import snapshot_dir
    base = model_path(cfg, out)
    points = [{"name": "base", "model": base, "adapter": None, "run": "base", "arm": "base", "kind": None,
               "seed": None, "values": {}, "step": 0, "snapshot": None}]
    for name, run in cfg.expanded_runs().items():
        tc = cfg.train_config(name, str(out), base)
        folder = Path(tc.out)
        meta = {"run": name, "arm": run.arm, "kind": tc.regularizer.kind, "seed": tc.seed,
                "values": to_plain(run.values)}
        for k in sorted(tc.checkpoint.snapshots):
            snap = snapshot_dir(folder, k)
            points.append({"name": f"{name}@step-{k}", **_weights(tc, base, snap), **meta, "step": k,
                           "snapshot": snap})
        points.append({"name": name, **_weights(tc, base, folder / ("adapter" if tc.lora.enabled else "model")),
                       **meta, "step": None, "snapshot": None})
    return points


def _weights(tc, base: str, folder: Path) -> dict:
    """model and adapter of an export of run `tc`: an adapter on the base model, or a whole model."""
    return {"model": base, "adapter": str(folder)} if tc.lora.enabled else {"model": str(folder), "adapter": None}


def _eval(cfg: PipelineConfig, out: Path, log) -> dict:
    """Every point of `_eval_points` whose weights exist (a snapshot at or past a run's last step is its final
    export), each data-parallel over the stage's ranks; one recorded finished with the same config, whose
    results.json is there, is skipped."""
    from e2wm.pipeline.launch import run_stage
    state = State(out)
    points = _eval_points(cfg, out)
    placeholders = {p["name"]: p for p in _eval_points(cfg, Path("OUT"))}   # a config that does not name OUT
    done = 0
    for p in points:
        name = p["name"]
        if p["snapshot"] is not None and not _exported(p["snapshot"]):
            log(f"  {name}: no snapshot at step {p['step']} (the run ends there or before), not evaluated")
            continue
        ph = placeholders[name]
        h = config_hash("eval", to_plain(cfg.eval_config("OUT", ph["model"], ph["adapter"], name)))
        ec = cfg.eval_config(str(out), p["model"], p["adapter"], name)
        if state.part_done("eval", name, h) and (Path(ec.out) / "results.json").is_file():
            log(f"  {name}: evaluated earlier, skipped")
            done += 1
            continue
        log(f"  evaluating {name}")
        run_stage("eval", ec, **cfg.launch(), log=lambda *a: log("  " + " ".join(map(str, a))))
        state.mark_part("eval", name, h)
        done += 1
    return {"evaluations": done} if cfg.sweep.active else {}


def _final_step(folder: Path) -> int | None:
    """The step of the checkpoint export `folder` was made from (its marker's source), or None."""
    import re

    from e2wm.files import read_json
    from e2wm.train.export import MARKER
    marker = read_json(folder / MARKER, "export marker")
    m = re.search(r"step-(\d+)$", str(marker.get("source", ""))) if isinstance(marker, dict) else None
    return int(m[1]) if m else None


def _report(cfg: PipelineConfig, out: Path, log) -> dict:
    """The report of the base model and every run's final export; with a sweep, also OUT/report/runs.json:
    one record per evaluated point (snapshots too), and from it the frontier (`e2wm.eval.frontier`:
    frontier.md, frontier.png, verdict.json, and a section of report.md that links them)."""
    from e2wm.eval.report import report
    from e2wm.files import write_json
    runs = [str(out / "eval" / n) for n in ("base", *cfg.expanded_runs())]
    path = report(runs, out / "report")
    if cfg.note:
        write_atomic(path, f"> {cfg.note}\n\n" + path.read_text())
    log(f"  wrote {path}")
    if not cfg.sweep.active:
        return {}
    points = []
    for p in _eval_points(cfg, out):
        if not (out / "eval" / p["name"] / "results.json").is_file():
            continue   # a snapshot not taken
        step = p["step"]
        if step is None:
            step = _final_step(Path(p["adapter"] or p["model"]))
        points.append({"run": p["run"], "arm": p["arm"], "kind": p["kind"], "seed": p["seed"], "values": p["values"],
                       "step": step, "final": p["snapshot"] is None and p["run"] != "base",
                       "eval": f"eval/{p['name']}"})
    runs_json = write_json(out / "report" / "runs.json", {"sweep": to_plain(cfg.sweep), "points": points})
    log(f"  wrote {runs_json} ({len(points)} evaluated points)")
    from e2wm.eval.frontier import frontier, report_section
    md = frontier(out, runs_json)
    write_atomic(path, path.read_text() + report_section(md.parent))
    log(f"  wrote {md}, {md.parent / 'frontier.png'} and {md.parent / 'verdict.json'}")
    return {"points": len(points)}


RUNNERS = {"collect": _collect, "data": _data, "model": _model, "fisher": _fisher, "train": _train,
           "eval": _eval, "report": _report}
