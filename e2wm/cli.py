"""The `e2wm` command. User errors print one line and exit 2, never a traceback."""
from __future__ import annotations

import os
import sys
from importlib import import_module, resources

from e2wm.argparser import Parser, bounded
from e2wm.collect.config import CollectConfig
from e2wm.collect.mcts import ROLLOUTS, SELECTS, MCTSConfig
from e2wm.config import add_field_flags, apply_sets, flag_values, read_yaml
from e2wm.data.config import DataConfig
from e2wm.eval import __main__ as eval_main
from e2wm.errors import E2WMError
from e2wm.files import dumps

MCTS_DEFAULTS = MCTSConfig()


def main(argv: list[str] | None = None) -> int:
    from e2wm.quiet import quiet_libraries
    quiet_libraries()   # known library chatter off stderr, before any library loads
    try:
        return _run(argv)
    except BrokenPipeError:   # `e2wm plan --list | head -1`: the reader left; end quietly like any Unix tool
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _run(argv) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "func", None) in (_fisher, _train):
        args.rest = rest   # `e2wm fisher` and `e2wm train` hand their flags to their entry points
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code = args.func(args) or 0
        sys.stdout.flush()   # a closed pipe shows up here, inside the handler above
        return code
    except E2WMError as e:
        return user_error(e)
    except OSError as e:
        if e.filename is None or isinstance(e, BrokenPipeError):
            raise   # not about a path the user gave: a bug or the machine; keep the traceback
        return user_error(f"{e.filename}: {e.strerror or e}")
    except KeyboardInterrupt:
        print("e2wm: interrupted", file=sys.stderr)
        return 130


def user_error(e) -> int:
    """One line on stderr, exit code 2. A path whose name is not UTF-8 (os.fsdecode keeps its bytes as
    surrogates) prints those bytes as \\xNN escapes rather than failing to encode."""
    line = "e2wm: error: " + " ".join(str(e).split())
    try:
        line = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # a surrogate no file name gives (from JSON "\ud800", say)
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    print(line, file=sys.stderr)
    return 2


def _parser() -> Parser:
    p = Parser(prog="e2wm", description=__doc__)
    sub = p.add_subparsers(metavar="COMMAND", required=True)

    world = sub.add_parser("world", help="the VirtualHome world model").add_subparsers(metavar="WHAT", required=True)
    d = world.add_parser("demo", help="a procedural apartment and a short scripted episode")
    d.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0)
    d.set_defaults(func=_world_demo)
    c = world.add_parser("conformance", help="agreement with the official VirtualHome executor")
    c.add_argument("--programs", type=bounded(1, 100_000), default=None, help="replay only the first N RobotHow programs")
    c.add_argument("--random-steps", type=bounded(0, 100_000_000), default=20000)
    c.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0)
    c.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    c.set_defaults(func=_world_conformance)

    pl = sub.add_parser("plan", help="plan one activity with MCTS and print the episode")
    pl.add_argument("--scene", default=None,
                    help="scene source (default: the first procedural apartment, from procedural:SEED "
                         "on, that has the activity's classes)")
    pl.add_argument("--activity", default=None,
                    help="activity name (see --list); a robothow: scene without one plans its program's goal")
    pl.add_argument("--seed", type=int, default=0, help="job seed: with --unit it fixes the plan (default 0)")
    pl.add_argument("--unit", type=int, default=0, help="work unit under the seed; another unit, another search")
    pl.add_argument("--simulations", type=int, default=MCTS_DEFAULTS.simulations,
                    help=f"UCT simulations of the search (default {MCTS_DEFAULTS.simulations})")
    pl.add_argument("--max-depth", type=int, default=MCTS_DEFAULTS.max_depth,
                    help=f"most actions in a rollout or plan (default {MCTS_DEFAULTS.max_depth})")
    pl.add_argument("--select", choices=SELECTS, default=MCTS_DEFAULTS.select,
                    help="the plan: the shortest successful simulated path (default), the best-reward one (E2WM's) "
                    "or the most-visited descent")
    pl.add_argument("--rollout", choices=ROLLOUTS, default=MCTS_DEFAULTS.rollout,
                    help="goal-aware rollouts (default) or uniform random ones (E2WM's)")
    pl.add_argument("--no-prune", action="store_true", help="keep steps the plan does not need")
    pl.add_argument("--list", action="store_true", help="list the activity library and exit")
    pl.add_argument("--json", action="store_true", help="print the episode record as one JSON line")
    pl.set_defaults(func=_plan)

    ex = sub.add_parser("explore", help="multi-agent random exploration; print the episode")
    ex.add_argument("--scene", default=None, help="scene source (default: procedural:SEED)")
    ex.add_argument("--agents", type=int, default=3, help="characters acting at random (default 3)")
    ex.add_argument("--steps", type=int, default=40, help="steps; each step one agent, drawn at random, acts (default 40)")
    ex.add_argument("--seed", type=int, default=0, help="job seed: with --unit it fixes the episode (default 0)")
    ex.add_argument("--unit", type=int, default=0, help="work unit under the seed (default 0)")
    ex.add_argument("--json", action="store_true", help="print the episode record as one JSON line")
    ex.set_defaults(func=_explore)

    co = sub.add_parser("collect", help="collect plan and exploration episodes on Ray (resumable)")
    co.add_argument("--config", default=None, help="YAML job config (default: the packaged quickstart preset)")
    co.add_argument("--preset", default=None, help="a packaged job instead: paper (E2WM's scale)")
    flags = add_field_flags(co, CollectConfig)
    co.add_argument("--activity", action="append", default=None, help="plan only this activity (repeatable)")
    co.add_argument("--simulations", type=int, default=None,
                    help="MCTS simulations per plan (short for --set mcts.simulations=N)")
    _add_set_flag(co, "mcts.max_depth=20")
    co.add_argument("--force", action="store_true",
                    help="write into a non-empty --out that holds no manifest (files there named like "
                         "collect's outputs are still never overwritten)")
    co.add_argument("--check", action="store_true",
                    help="check the config and --out, plan the units, print their count and exit "
                         "(starts no Ray, writes nothing)")
    co.set_defaults(func=_collect, config_flags=flags)

    bd = sub.add_parser("build-data", help="episodes -> E2WM training tasks and evaluation suites")
    bd.add_argument("--episodes", required=True, help="an `e2wm collect` output directory")
    bd.add_argument("--out", required=True, help="output directory (must not exist)")
    bd.add_argument("--config", default=None, help="YAML data config (default: the packaged preset)")
    bd.add_argument("--preset", default=None, help="a packaged data config instead: paper")
    bd.add_argument("--tokenizer", default=None,
                    help="a tokenizer (path or hub id) to report lengths in tokens on the dataset card")
    flags = add_field_flags(bd, DataConfig)
    _add_set_flag(bd, "weights.counting=2")
    bd.set_defaults(func=_build_data, config_flags=flags)

    ev = sub.add_parser("eval", help="score a model (and adapter) on suites in E2WM's released format")
    ev.set_defaults(func=_eval, config_flags=eval_main.add_flags(ev))

    rp = sub.add_parser("report", help="several `e2wm eval` runs side by side (Table 2 layout) with charts")
    rp.add_argument("runs", nargs="+", help="e2wm eval output directories, the base run first")
    rp.add_argument("--out", required=True, help="where report.md and the PNG charts go")
    rp.set_defaults(func=_report)

    fi = sub.add_parser("fisher", help="diagonal Fisher of the base weights (single process, or under "
                        "torchrun / deepspeed: python -m e2wm.train.fisher_run)", add_help=False)
    fi.set_defaults(func=_fisher)
    tr = sub.add_parser("train", help="fine-tune with LoRA / EWC-LoRA / EWC / KL under DeepSpeed (one process; "
                        "for several: deepspeed or torchrun -m e2wm.train)", add_help=False)
    tr.set_defaults(func=_train)
    xp = sub.add_parser("export", help="a training checkpoint -> PEFT adapter directory (LoRA) or HF model")
    xp.add_argument("checkpoint", help="a step directory, or a run directory (its newest checkpoint)")
    xp.add_argument("--out", required=True, help="output directory (replaced if an earlier export)")
    xp.add_argument("--force", action="store_true", help="replace a non-empty directory that is not an export")
    xp.set_defaults(func=_export)
    mg = sub.add_parser("merge", help="base model + PEFT adapter -> one HF model directory")
    mg.add_argument("--adapter", required=True, help="adapter directory (from e2wm export or training)")
    mg.add_argument("--out", required=True, help="output directory")
    mg.add_argument("--base", default=None, help="base model (default: the adapter's base_model_name_or_path)")
    mg.add_argument("--force", action="store_true", help="replace a non-empty directory that is not an export")
    mg.set_defaults(func=_merge)

    pp = sub.add_parser("pipeline", help="world model to report in one command: collect, data, model, fisher, "
                        "train, eval, report (resumable)")
    pp.add_argument("--preset", default=None, help="quickstart (default: a tiny CPU demo), table2-mini, "
                    "frontier-mini, gpt-neo-1.3b, gpt-j-6b, llama-13b")
    pp.add_argument("--config", default=None, help="a pipeline YAML instead of a preset")
    pp.add_argument("--out", default=None, help="output directory (default: the preset's)")
    pp.add_argument("--stages", default=None, help="comma-separated subset, e.g. collect,data (default: all)")
    pp.add_argument("--redo", default=None, help="comma-separated stages to run again from scratch, with every "
                    "stage after them (their outputs are removed first), e.g. --redo train after a config change")
    pp.add_argument("--launcher", choices=("local", "deepspeed", "ray"), default=None,
                    help="how the fisher, train and eval stages get their ranks (default: the preset's)")
    pp.add_argument("--workers", type=bounded(1, 4096), default=None, help="ranks of the fisher, train and eval stages")
    pp.add_argument("--gpus", action="store_true", help="one GPU per rank")
    pp.add_argument("--address", default=None, help="Ray: local, auto or HOST:PORT")
    pp.add_argument("--model", default=None, help="the base model: a local directory (e.g. a copy of the "
                    "paper's model), a hub id or shape:NAME")
    pp.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a pipeline's")
    pp.add_argument("--check", action="store_true", help="check the config for --workers ranks (every run's "
                    "batches and DeepSpeed config, the corpus, the model) and say what was checked; writes "
                    "nothing, starts no Ray, loads no model")
    _add_set_flag(pp, "train.optim.lr=1e-4")
    pp.set_defaults(func=_pipeline, config_flags=[])

    bench = sub.add_parser("bench", help="benchmarks, contenders side by side").add_subparsers(metavar="WHAT",
                                                                                   required=True)
    b = bench.add_parser("world", help="e2wm's engine vs the official executor")
    b.add_argument("--scene", default=None, help="scene source (default: the first RobotHow program)")
    b.add_argument("--steps", type=bounded(1, 10_000_000), default=4000)
    b.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0)
    b.set_defaults(func=_bench, bench="world")
    m = bench.add_parser("mcts", help="MCTS simulations/s: e2wm's engine vs the official executor")
    m.add_argument("--program", default=None, help="RobotHow program (default: file1003_2)")
    m.add_argument("--simulations", type=bounded(1, 10_000_000), default=20_000)
    m.add_argument("--official-simulations", type=bounded(1, 1_000_000), default=200)
    m.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0)
    m.set_defaults(func=_bench, bench="mcts")
    bc = bench.add_parser("collect", help="collection episodes/s by worker count (Ray)")
    bc.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    bc.add_argument("--units", type=bounded(1, 1_000_000), default=100, help="plan units per run")
    bc.add_argument("--simulations", type=bounded(1, 10_000_000), default=2000)
    bc.set_defaults(func=_bench, bench="collect")
    bt = bench.add_parser("ewc", help="EWC-LoRA step time vs plain LoRA step time")
    bt.set_defaults(func=_bench, bench="regularizers", what="ewc")
    bt = bench.add_parser("fisher", help="Fisher tokens/s by method (batch, loop) vs plain forward+backward, "
                          "with peak memory")
    bt.add_argument("--model", default=None, help="model spec (default: a Llama, hidden 256, 4 layers, byte "
                    "tokens); e.g. shape:gpt-neo-1.3b on a GPU")
    bt.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    bt.add_argument("--samples", type=bounded(1, 1_000_000), default=64)
    bt.add_argument("--seq", type=bounded(2, 131_072), default=128, help="tokens per sample")
    bt.add_argument("--micro-batch", type=bounded(1, 4096), default=8)
    bt.add_argument("--gradient-checkpointing", action="store_true", help="recompute each layer in backward, as "
                    "`e2wm fisher --gradient-checkpointing`")
    bt.set_defaults(func=_bench, bench="regularizers", what="fisher")
    bt = bench.add_parser("train", help="trainer tokens/s vs a plain transformers+peft loop and E2WM's "
                          "pad-to-800 batching")
    bt.add_argument("--model", default=None, help="model spec (default: a Llama, hidden 256, 4 layers, "
                    "byte tokens); e.g. shape:gpt-neo-1.3b on a GPU")
    bt.add_argument("--rows", type=bounded(1, 1_000_000), default=240)
    bt.add_argument("--steps", type=bounded(1, 100_000), default=6, help="timed optimizer steps (after 2 warm-up steps)")
    bt.add_argument("--global-batch", type=bounded(1, 65_536), default=16)
    bt.add_argument("--micro-batch", type=bounded(1, 65_536), default=4)
    bt.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    bt.add_argument("--zero-stage", type=int, choices=(1, 2, 3), default=2)
    bt.add_argument("--no-pad800", action="store_true", help="skip the (slow) pad-to-800 contender")
    bt.set_defaults(func=_bench, bench="train")
    be = bench.add_parser("eval", help="multiple-choice items/s: the scorer vs one forward per option; "
                          "generation items/s: batched vs item by item")
    be.add_argument("--items", type=bounded(1, 1_000_000), default=24)
    be.add_argument("--gen-items", type=bounded(1, 1_000_000), default=32, help="generation prompts")
    be.add_argument("--new-tokens", type=bounded(1, 2048), default=64, help="generation length")
    be.add_argument("--words", type=bounded(1, 100_000), default=120, help="story words per prompt")
    be.add_argument("--model", default=None, help="tiny, shape:NAME or a model directory (default: a random "
                    "Llama of hidden 256, 4 layers, byte tokens)")
    be.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    be.set_defaults(func=_bench, bench="eval")
    q = bench.add_parser("plans", help="MCTS success rate and plan length over the activity library")
    q.add_argument("--scenes", type=bounded(1, 100_000), default=50, help="procedural apartments 0..N-1")
    q.add_argument("--simulations", type=bounded(1, 10_000_000), default=2000)
    q.add_argument("--workers", type=bounded(1, 1024), default=1, help="processes")
    q.add_argument("--planners", default="uniform,goal", help="rollouts side by side (comma-separated)")
    q.set_defaults(func=_bench, bench="plans")
    bm = bench.add_parser("memory", help="GPU memory per rank of the train and fisher stages, ZeRO-2/3, with and "
                          "without gradient checkpointing: saved activations measured on 1-2 real layers, "
                          "extrapolated to all")
    bm.add_argument("--model", default="shape:llama-13b", help="tiny, shape:NAME, a model directory or hub id "
                    "(only its config is read)")
    bm.add_argument("--micro-batch", type=bounded(1, 4096), default=8)
    bm.add_argument("--seq", type=bounded(2, 131_072), default=800, help="tokens per row")
    bm.add_argument("--world", type=bounded(1, 65_536), default=8, help="ranks (GPUs)")
    bm.add_argument("--layers", type=bounded(1, 1024), default=None, help="layers to extrapolate to "
                    "(default: the model's)")
    bm.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    bm.add_argument("--device", choices=("meta", "accelerator"), default="meta", help="meta: shapes only, no "
                    "data (default); accelerator: real tensors on this rank's device")
    bm.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    bm.set_defaults(func=_bench, bench="memory")
    return p


def _plan(args) -> int:
    from e2wm.collect.episodes import check_seed_unit
    from e2wm.collect.plans import format_plan_episode, plan_episode
    from e2wm.world.activities import ALL_ACTIVITIES, UNSEEN_NAMES, get_activity
    if args.list:
        for a in ALL_ACTIVITIES:
            held = " (held out)" if a.name in UNSEEN_NAMES else ""
            print(f"{a.name + held:<40} {'; '.join(a.goals)}")
        return 0
    # Every flag is checked before the (slow) search for a fitting apartment.
    cfg = MCTSConfig(simulations=args.simulations, max_depth=args.max_depth, select=args.select,
                     rollout=args.rollout, prune=not args.no_prune)
    check_seed_unit(args.seed, args.unit)
    activity = get_activity(args.activity) if args.activity else None
    scene = args.scene
    if scene is None:
        if activity is None:
            raise E2WMError("plan: name an --activity (see --list) or a robothow: --scene")
        scene = _first_fitting_scene(activity, args.seed)
    with _progress() as bar:
        task = bar.add_task(f"MCTS on {scene}", total=cfg.simulations)
        ep = plan_episode(scene, args.activity, cfg, args.seed, args.unit,
                          progress=lambda k: bar.advance(task, k))
    print(ep.to_json() if args.json else format_plan_episode(ep))
    return 0


def _first_fitting_scene(activity, start: int) -> str:
    from e2wm.collect.run import activity_hosts
    seeds = activity_hosts([activity], range(start, start + 1000))[activity.name]
    if seeds:
        return f"procedural:{seeds[0]}"
    raise E2WMError(f"activity {activity.name!r}: no procedural apartment from seed {start} on can "
                    f"pose it (it needs {', '.join(activity.classes())}, with work left on each)")


def _explore(args) -> int:
    from e2wm.collect.explore import ExploreConfig, explore_episode, format_episode
    cfg = ExploreConfig(agents=args.agents, steps=args.steps)
    ep = explore_episode(args.scene or f"procedural:{args.seed}", cfg, args.seed, args.unit)
    print(ep.to_json() if args.json else format_episode(ep))
    return 0


def _collect(args) -> int:
    from e2wm.collect.run import collect, prepare
    flags = {"activities": args.activity} if args.activity else {}
    sims = [f"mcts.simulations={args.simulations}"] if args.simulations is not None else []
    cfg = _job_config(CollectConfig, args, "collect.yaml", flags, sims)
    if args.check:
        out, units, m = prepare(cfg, force=args.force)
        print(f"ok: {len(units)} units ({cfg.plans} plans, {cfg.explorations} explorations, {cfg.stories} "
              f"stories) in {m['n_shards']} shards, {len(m['shards'])} already done in {out}; nothing "
              f"started or written")
        return 0
    with _progress(rate=True) as bar:
        task = bar.add_task(f"collecting into {cfg.out}", total=None)

        def advance(k, total):
            bar.update(task, total=total, advance=k)
        stats = collect(cfg, progress=advance, log=bar.console.print, force=args.force)
    print(f"{stats['episodes']} episodes, {stats['failures']} failed units (see failures.jsonl) of "
          f"{stats['units']} in {cfg.out}; this run: {stats['units_this_run']} units, {stats['wall_s']} s "
          f"in all, {stats['run_s']} s of work ({stats['units_per_s']} units/s on {stats['workers']} "
          f"workers, {stats['restarts']} restarts)")
    print(f"content hash {stats['content_hash']}")
    return 0


def _build_data(args) -> int:
    from e2wm.data.builder import build_data
    s = build_data(args.episodes, args.out, _job_config(DataConfig, args, "data.yaml"),
                   tokenizer=args.tokenizer)
    for task, v in s["train"].items():
        print(f"  train {task:<22} {v['rows']:>6} rows (weight {v['weight']})")
    for suite, v in s["eval"].items():
        print(f"  eval  {suite:<26} {v['rows']:>6} rows ({v['format']}; {sum(v['dropped'].values())} "
              f"dropped by the leak guard or as repeats)")
    cov = s["coverage"]
    sub = cov.get("subset")
    scope = (f"activities of the collection's subset trained on: {cov['trained']}/{sub['library']} (a subset of "
             f"the library's {cov['library']} by design)" if sub else
             f"library activities trained on: {cov['trained']}/{cov['library']}")
    print(f"  {scope}; first-room mismatch {s['plans']['first_room_mismatch']:.1%}")
    print(f"wrote {args.out} (train/, eval/, hf/ DatasetDict, README.md); train/eval overlaps: {s['overlaps']}")
    return 0


def _add_set_flag(parser, example: str) -> None:
    parser.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                        help=f"override any config key, e.g. {example} (a YAML value; repeatable; "
                             f"wins over the other flags)")


def _job_config(cls, args, preset: str, flags: dict | None = None, sets=()):
    """`cls` from --config (or the preset), then its field flags and `flags`, then `sets` and --set."""
    if getattr(args, "preset", None):
        if args.config:
            raise E2WMError("give --config or --preset, not both")
        preset = f"{preset.removesuffix('.yaml')}-{args.preset}.yaml"
        known = sorted(p.name for p in resources.files("e2wm").joinpath("presets").iterdir())
        if preset not in known:
            raise E2WMError(f"--preset {args.preset}: no packaged preset {preset}; have {', '.join(known)}")
    data, where = read_yaml(args.config, preset)
    given = {**flag_values(args, args.config_flags), **(flags or {})}
    sets = [*sets, *(args.set or ())]
    data = apply_sets({**data, **given}, sets)
    if given or sets:   # the bad value may come from the command line, not the file
        where += " + command line"
    return cls.from_dict(data, where)


def _pipeline(args) -> int:
    from e2wm.pipeline.config import STAGES, PipelineConfig
    from e2wm.pipeline.run import check, pipeline
    flags = {k: v for k, v in (("out", args.out), ("launcher", args.launcher), ("workers", args.workers),
                               ("address", args.address)) if v is not None}
    if args.gpus:
        flags["gpus"] = True
    sets = [f"model.base={args.model}"] if args.model else []
    if args.preset is None and args.config is None:
        args.preset = "quickstart"
    cfg = _job_config(PipelineConfig, args, "pipeline.yaml", flags, sets)
    stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else STAGES
    redo = tuple(s.strip() for s in args.redo.split(",")) if args.redo else ()
    if args.check:
        for line in check(cfg, stages, force=args.force, redo=redo):
            print(line)
        print("pipeline config checked: nothing written")
        return 0
    pipeline(cfg, stages, force=args.force, redo=redo)
    return 0


def _fisher(args) -> int:
    from e2wm.train.fisher_run import entry
    return entry(args.rest)


def _train(args) -> int:
    from e2wm.train.__main__ import main as main_train
    return main_train(args.rest)


def _export(args) -> int:
    from e2wm.train.export import export
    print(f"wrote {export(args.checkpoint, args.out, args.force)}")
    return 0


def _eval(args) -> int:
    eval_main.run(eval_main.config(args, args.config_flags))
    return 0


def _report(args) -> int:
    from e2wm.eval.report import report
    print(f"wrote {report(args.runs, args.out)}")
    return 0


def _merge(args) -> int:
    from e2wm.train.export import merge
    print(f"wrote {merge(args.adapter, args.out, args.base, args.force)}")
    return 0


def _world_demo(args) -> int:
    from e2wm.world.demo import run_demo
    run_demo(args.seed)
    return 0


def _world_conformance(args) -> int:
    from e2wm.world.conformance import FIXES, random_differential, replay_programs
    from e2wm.world.oracle import available
    from e2wm.world.procedural import generate_apartment
    from e2wm.world.scenes import robothow_programs
    if not available():
        raise E2WMError("conformance needs the official executor: pip install 'e2wm[virtualhome]'")
    programs = robothow_programs()[: args.programs]
    with _progress() as bar:
        task = bar.add_task("replaying RobotHow programs", total=len(programs))
        prog = replay_programs(programs, progress=lambda: bar.advance(task))
        scenes = [(f"robothow:{p.name}", p.graphs["init_graph"]) for p in programs[::10]]
        scenes += [(f"procedural:{s}:2", generate_apartment(s, n_characters=2)) for s in range(len(scenes))]
        task = bar.add_task("random differential steps", total=args.random_steps)
        rnd = random_differential(scenes, args.random_steps, seed=args.seed,
                                  progress=lambda: bar.advance(task))
    print(f"RobotHow programs: {prog.total}; executed: e2wm {prog.executed}, official "
          f"{prog.oracle_executed}")
    print(f"Final graph = shipped (states; ON/INSIDE/HOLDS): e2wm {prog.final_match} "
          f"({prog.final_exact} exact, the rest explained by documented fixes), official "
          f"{prog.oracle_final_match}; e2wm = official: {prog.agree_with_oracle}")
    print(f"\nRandom differential steps: {rnd.steps} over {len(scenes)} scenes "
          f"(RobotHow and 2-agent procedural)")
    kinds = ["agree", *FIXES, "unexplained"]
    print(f"{'action':<11}" + "".join(f"{k[:14]:>15}" for k in kinds))
    for action, counts in sorted(rnd.by_action.items()):
        print(f"{action:<11}" + "".join(f"{counts.get(k, 0):>15}" for k in kinds))
    print("\nDocumented fixes (each disagreement is one of these):")
    for k, text in FIXES.items():
        print(f"  {k}: {rnd.explained.get(k, 0)} steps, {prog.explained.get(k, 0)} programs - {text}")
    unexplained = len(rnd.unexplained) + len(prog.unexplained)
    for item in (prog.unexplained + rnd.unexplained)[:20]:
        print("  UNEXPLAINED:", item)
    if args.json:
        print(dumps({
            "programs_total": prog.total, "programs_executed": prog.executed,
            "final_match": prog.final_match, "final_exact": prog.final_exact,
            "oracle_programs_executed": prog.oracle_executed,
            "oracle_final_match": prog.oracle_final_match,
            "agree_with_oracle": prog.agree_with_oracle,
            "random_steps": rnd.steps, "random_agree": rnd.agree,
            "explained": dict(rnd.explained + prog.explained), "unexplained": unexplained}))
    return 1 if unexplained else 0


def _bench(args) -> int:
    return import_module(f"e2wm.bench.{args.bench}").main(args)


def _progress(rate: bool = False):
    from e2wm.progress import progress
    return progress(rate)


if __name__ == "__main__":
    from e2wm.train.dist import exit_now, is_distributed_env
    code = main()
    if is_distributed_env():   # a rank of torchrun / deepspeed: every file is written and the group is gone; the
        exit_now(code)         # interpreter's teardown can still abort it in torch.distributed's C++ threads
    sys.exit(code)
