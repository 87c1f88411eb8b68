"""`e2wm pipeline`: world model to report in one command, resumable stage by stage.

Stages, each writing one folder under OUT:
  collect  episodes on Ray (e2wm collect)                 -> OUT/collect
  data     training tasks and evaluation suites           -> OUT/data
  model    the base model (made here, or a given one)     -> OUT/model
  fisher   Fisher diagonal on general text                -> OUT/fisher
  train    one run per entry of `runs` (regularisers)     -> OUT/train/RUN
  eval     the base model and every run: suites, perplexity -> OUT/eval/NAME
  report   the runs side by side, with charts             -> OUT/report
This module only wires the stages' own entry points together.
"""
from __future__ import annotations

import time
from pathlib import Path

from e2wm.config import to_plain
from e2wm.errors import E2WMError
from e2wm.files import make_dir, output_dir, write_atomic
from e2wm.pipeline.config import STAGES, PipelineConfig
from e2wm.pipeline.state import STATE, State, config_hash


def pipeline(cfg: PipelineConfig, stages=STAGES, log=print, force: bool = False) -> Path:
    """Run (or resume) `stages` of the pipeline in order; returns OUT."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise E2WMError(f"--stages: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    out = output_dir(cfg.out, "--out", ours=(STATE,), force=force)
    if set(stages) & {"model", "fisher", "train", "eval"}:   # before an hour of collection, not after
        from e2wm.train.corpus import check_corpus
        check_corpus(cfg.corpus, "corpus")
        _general(cfg)
        if cfg.model.base != "local":
            from e2wm.train.model import check_model_spec
            check_model_spec(cfg.model.base, "model.base")
    state = State(out)
    hashes = _hashes(cfg)
    # a stage to run whose config changed is refused; the others only need to have finished
    done = {s: state.check(s, hashes[s]) if s in stages else state.finished(s, hashes[s]) for s in STAGES}
    for i, stage in enumerate(STAGES):
        missing = [s for s in STAGES[:i] if not done[s] and s not in stages]
        if stage in stages and not done[stage] and missing:
            raise E2WMError(f"stage {stage} needs stage(s) {', '.join(missing)}, not finished in {out}; "
                            f"add them to --stages")
    make_dir(out)
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


def _hashes(cfg: PipelineConfig) -> dict[str, str]:
    """Each stage's hash covers its own section and the hashes of the stages before it."""
    c = to_plain(cfg)
    own = {"collect": cfg.collect.job_dict(),   # what determines the episodes, not where or how fast
           "data": c["data"], "model": [c["model"], c["corpus"]],
           "fisher": [c["fisher"], c["corpus"]], "train": [c["train"], c["runs"]],
           "eval": [c["eval"], c["corpus"]], "report": []}
    out, prev = {}, ""
    for s in STAGES:
        prev = out[s] = config_hash(s, own[s], prev)
    return out


# ---------------------------------------------------------------- stages

def _collect(cfg: PipelineConfig, out: Path, log) -> dict:
    from dataclasses import replace

    from e2wm.collect.run import collect
    from e2wm.progress import progress
    job = replace(cfg.collect, out=str(out / "collect"), address=cfg.address)
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


def _general(cfg: PipelineConfig) -> tuple[list[str], list[str], list[str]]:
    """The general corpus split three ways: the Fisher's first documents, perplexity's last, the rest."""
    from e2wm.train.corpus import load_texts
    docs = load_texts(cfg.corpus)
    ppl = cfg.eval_config("OUT", "MODEL", None).ppl_docs
    fisher = min(cfg.fisher.max_samples, len(docs) - ppl)
    if fisher < 1:
        raise E2WMError(f"corpus {cfg.corpus}: {len(docs)} documents leave none for the Fisher after "
                        f"eval.ppl_docs={ppl}")
    return docs[:fisher], docs[len(docs) - ppl:], docs[:len(docs) - ppl]


def model_path(cfg: PipelineConfig, out: Path) -> str:
    return str(out / "model") if cfg.model.base == "local" else cfg.model.base


def _model(cfg: PipelineConfig, out: Path, log) -> dict:
    if cfg.model.base != "local":
        from e2wm.train.model import check_model_spec
        check_model_spec(cfg.model.base, "model.base")
        log(f"  base model: {cfg.model.base}")
        return {"base": cfg.model.base}
    from e2wm.pipeline.local_model import make_local_model, task_texts
    _, _, rest = _general(cfg)
    return make_local_model(cfg.model, task_texts(out / "data"), rest, out / "model", log)


def _fisher(cfg: PipelineConfig, out: Path, log) -> dict:
    from e2wm.pipeline.launch import run_stage
    f = cfg.fisher
    n = len(_general(cfg)[0])
    argv = ["--model", model_path(cfg, out), "--corpus", cfg.corpus, "--max-samples", str(n),
            "--max-length", str(f.max_length), "--micro-batch", str(f.micro_batch), "--modules", f.modules,
            "--checkpoint-every", str(f.checkpoint_every), "--out", str(out / "fisher"), "--force"]
    if cfg.launcher != "local":
        argv += ["--zero-stage", str(f.zero_stage)]
    run_stage("fisher", argv, launcher=cfg.launcher, workers=cfg.workers, use_gpu=cfg.gpus,
              address=cfg.address, log=log)
    return {"samples": n}


def _train(cfg: PipelineConfig, out: Path, log) -> dict:
    import yaml

    from e2wm.pipeline.launch import run_stage
    make_dir(out / "train")
    for name in cfg.runs:
        tc = cfg.train_config(name, str(out), model_path(cfg, out))
        f = out / "train" / f"{name}.yaml"
        write_atomic(f, yaml.safe_dump(tc.to_dict(), sort_keys=False))
        log(f"  run {name}: {tc.regularizer.kind}, lora {'on' if tc.lora.enabled else 'off'}")
        run_stage("train", ["--config", str(f)], launcher=cfg.launcher, workers=cfg.workers, use_gpu=cfg.gpus,
                  address=cfg.address, log=log)
    return {"runs": list(cfg.runs)}


def _eval(cfg: PipelineConfig, out: Path, log) -> dict:
    todo = [("base", model_path(cfg, out), None)]
    for name in cfg.runs:
        tc = cfg.train_config(name, str(out), model_path(cfg, out))
        run = out / "train" / name
        todo.append((name, model_path(cfg, out), str(run / "adapter")) if tc.lora.enabled
                    else (name, str(run / "model"), None))
    for name, model, adapter in todo:
        log(f"  evaluating {name}")
        ec = cfg.eval_config(str(out), model, adapter, name)
        if cfg.launcher == "local":   # in this process
            from e2wm.eval.harness import evaluate
            evaluate(ec, log=lambda *a: log("  " + " ".join(map(str, a))))
        else:                         # data-parallel over the stage's ranks
            from e2wm.pipeline.launch import run_stage
            run_stage("eval", eval_argv(ec), launcher=cfg.launcher, workers=cfg.workers, use_gpu=cfg.gpus,
                      address=cfg.address, log=log)
    return {}


def eval_argv(ec) -> list[str]:
    """The `e2wm eval` command line of an EvalConfig (its scalar fields are the command's flags)."""
    import dataclasses
    argv = ["--suites", *ec.suites] + (["--only", *ec.only] if ec.only else [])
    for f in dataclasses.fields(ec):
        v = getattr(ec, f.name)
        if f.name not in ("suites", "only") and v is not None:
            argv += [f"--{f.name.replace('_', '-')}", str(v)]
    return argv


def _report(cfg: PipelineConfig, out: Path, log) -> dict:
    from e2wm.eval.report import report
    runs = [str(out / "eval" / n) for n in ("base", *cfg.runs)]
    path = report(runs, out / "report")
    if cfg.note:
        write_atomic(path, f"> {cfg.note}\n\n" + path.read_text())
    log(f"  wrote {path}")
    return {}


RUNNERS = {"collect": _collect, "data": _data, "model": _model, "fisher": _fisher, "train": _train,
           "eval": _eval, "report": _report}
