"""The driver of tests/multinode/test_ray_nodes.py, run on the head node (inside its namespaces): joins the Ray
cluster at ADDRESS, waits for the worker node's CPUs, then runs, one after another,

  collect-base   `e2wm collect` (its CLI entry, in this process) into SHARED/collect-base
  collect-kill   the same job into SHARED/collect-kill; its unit PAUSE_UNIT stops on the worker node until the
                 test kills that node (SHARED/paused-collect appears when it stops)
  train-base     `--launcher ray` EWC-LoRA training (2 Ray Train workers) into SHARED/train-base
  train-kill     the same into SHARED/train-kill; step PAUSE_STEP stops (SHARED/paused-train) until the kill

Fault injection lives here, not in e2wm: Ray runs `_pause_hook` in each worker process of this job; it wraps
the collection unit and adds a training step hook that stop where SHARED/pause.json says, once.

usage: ray_driver.py ADDRESS SHARED CONFIG_JSON MAX_FAILURES
"""
import json
import os
import sys
import time
from pathlib import Path

T0 = time.monotonic()
PAUSE_UNIT, PAUSE_STEP = 5, 3
COLLECT = ["--plans", "4", "--explorations", "4", "--stories", "2", "--scenes", "2", "--simulations", "100",
           "--workers", "2", "--shard-size", "4", "--max-in-flight", "1"]


def _pause_hook(spec_path: str):
    def install() -> None:
        from e2wm.collect import pool
        from e2wm.pipeline import launch

        def pause(kind: str, value: int) -> None:
            try:
                spec = json.loads(Path(spec_path).read_text())
            except FileNotFoundError:
                return
            if spec.get(kind) != value:
                return
            try:   # the first process to get here stops; the marker tells the test to kill the node
                os.close(os.open(spec["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            while True:
                time.sleep(60)

        run_unit = pool.run_unit

        def paused_unit(unit, seed, configs):
            pause("unit", unit.index)
            return run_unit(unit, seed, configs)
        pool.run_unit = paused_unit
        call = launch.call

        def paused_call(entry, cfg, log=print):
            from e2wm.train import recipe
            recipe.STEP_HOOKS.append(lambda done: pause("step", done))
            return call(entry, cfg, log)
        launch.call = paused_call
    return install


def _phase(shared: Path, name: str, pause: dict | None) -> None:
    spec = shared / "pause.json"
    if pause:
        spec.write_text(json.dumps({**pause, "marker": str(shared / f"paused-{name.split('-')[0]}")}))
    else:
        spec.unlink(missing_ok=True)
    print(f"== {name} at {time.monotonic() - T0:.1f} s", flush=True)


def main() -> int:
    import ray

    from e2wm.cli import main as cli
    from e2wm.config import build
    from e2wm.pipeline.launch import run_stage
    from e2wm.train.config import TrainConfig

    address, shared, config, max_failures = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ray.init(address=address, runtime_env={"worker_process_setup_hook": _pause_hook(str(shared / "pause.json")),
                                           "env_vars": {"OMP_NUM_THREADS": "1"}})
    while sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]) < 2:
        time.sleep(0.2)
    for name, pause in (("collect-base", None), ("collect-kill", {"unit": PAUSE_UNIT})):
        _phase(shared, name, pause)
        rc = cli(["collect", "--address", address, "--out", str(shared / name), *COLLECT])
        if rc:
            return rc
    cfg = json.loads(Path(config).read_text())
    for name, pause in (("train-base", None), ("train-kill", {"step": PAUSE_STEP})):
        _phase(shared, name, pause)
        run_stage("train", build(TrainConfig, {**cfg, "out": str(shared / name)}), launcher="ray", workers=2,
                  address=address, max_failures=max_failures)
    print(f"== done at {time.monotonic() - T0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
