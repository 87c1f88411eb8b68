"""The `e2wm` command. User errors print one line and exit 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import sys

from e2wm.errors import E2WMError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except E2WMError as e:
        print(f"e2wm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("e2wm: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2wm", description=__doc__)
    sub = p.add_subparsers(metavar="COMMAND")

    world = sub.add_parser("world", help="the VirtualHome world model").add_subparsers(metavar="WHAT")
    d = world.add_parser("demo", help="a procedural apartment and a short scripted episode")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_world_demo)
    c = world.add_parser("conformance", help="agreement with the official VirtualHome executor")
    c.add_argument("--programs", type=int, default=None, help="replay only the first N RobotHow programs")
    c.add_argument("--random-steps", type=int, default=20000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    c.set_defaults(func=_world_conformance)

    bench = sub.add_parser("bench", help="benchmarks, contenders side by side").add_subparsers(metavar="WHAT")
    b = bench.add_parser("world", help="e2wm's engine vs the official executor")
    b.add_argument("--scene", default=None, help="scene source (default: the first RobotHow program)")
    b.add_argument("--steps", type=int, default=4000)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_bench_world)
    return p


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
        print(json.dumps({
            "programs_total": prog.total, "programs_executed": prog.executed,
            "final_match": prog.final_match, "final_exact": prog.final_exact,
            "oracle_programs_executed": prog.oracle_executed,
            "oracle_final_match": prog.oracle_final_match,
            "agree_with_oracle": prog.agree_with_oracle,
            "random_steps": rnd.steps, "random_agree": rnd.agree,
            "explained": dict(rnd.explained + prog.explained), "unexplained": unexplained}))
    return 1 if unexplained else 0


def _bench_world(args) -> int:
    from e2wm.bench.world import run
    from e2wm.world.oracle import available
    from e2wm.world.scenes import load_scene, robothow_programs
    if not available():
        raise E2WMError("bench world runs the official executor side by side: "
                        "pip install 'e2wm[virtualhome]'")
    source = args.scene or f"robothow:{robothow_programs()[0].name}"
    r = run(load_scene(source), source, steps=args.steps, seed=args.seed)
    print(f"scene {source}, {r['steps']} steps of random valid actions, same stream for both")
    print(f"{'':<22}{'e2wm':>12}{'official':>12}{'ratio':>9}")
    print(f"{'step (steps/s)':<22}{r['e2wm_step_per_s']:>12,}{r['official_step_per_s']:>12,}"
          f"{r['ratio_step']:>8}x")
    print(f"{'clone+step (steps/s)':<22}{r['e2wm_clone_step_per_s']:>12,}"
          f"{r['official_clone_step_per_s']:>12,}{r['ratio_clone_step']:>8}x")
    print(f"median clone: e2wm {r['clone_us_median']} us, official state copy "
          f"{r['official_copy_us_median']} us")
    print(json.dumps(r))
    return 0


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


if __name__ == "__main__":
    sys.exit(main())
