"""`e2wm pipeline --preset quickstart` at a reduced size, end to end on CPU: every stage, the report with its
charts, a rerun that skips what is done, a changed config refused, and a killed run that continues."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_helpers import wait_for

from e2wm.cli import main
from e2wm.train import dist as edist

ROOT = Path(__file__).resolve().parents[2]
REDUCED = [f"--set={s}" for s in (
    "collect.plans=48", "collect.explorations=24", "collect.stories=24", "collect.scenes=8",
    "collect.mcts.simulations=400", "model.pretrain_steps=10", "fisher.max_samples=16", "fisher.max_length=64",
    "fisher.checkpoint_every=8", "train.optim.max_steps=4", "train.checkpoint.every=2", "eval.limit=2",
    "eval.max_new_tokens=8", "eval.num_beams=1", "eval.ppl_max_length=64")]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "run"
    assert main(["pipeline", "--out", str(out), *REDUCED]) == 0
    return out


@pytest.mark.slow
def test_quickstart_runs_every_stage_to_the_report(quickstart):
    state = json.loads((quickstart / "pipeline.json").read_text())["stages"]
    assert list(state) == ["collect", "data", "model", "fisher", "train", "eval", "report"]
    assert all(s["done"] for s in state.values())
    md = (quickstart / "report" / "report.md").read_text()
    assert md.startswith("> quickstart: a tiny model") and "| suite | metric | base | lora | ewc_lora |" in md
    assert "perplexity (lower is better)" in md
    assert (quickstart / "report" / "mc.png").read_bytes()[:4] == b"\x89PNG"
    gen = json.loads((quickstart / "eval" / "lora" / "results.json").read_text())["suites"]
    gen = [n for n, s in gen.items() if s["format"] == "gen"]
    if (quickstart / "report" / "gen.png").exists():   # 4 steps may teach nothing: then every suite is flagged
        assert (quickstart / "report" / "gen.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert all(f"- {n}: " in md for n in gen) and "## Flagged suites" in md
    for run in ("lora", "ewc_lora"):
        assert (quickstart / "train" / run / "adapter" / "adapter_config.json").is_file()
    meta = json.loads((quickstart / "eval" / "ewc_lora" / "results.json").read_text())
    assert meta["adapter"].endswith("ewc_lora/adapter") and meta["perplexity"]["fisher"].startswith("disjoint")


@pytest.mark.slow
def test_a_rerun_skips_finished_stages_and_a_changed_stage_is_refused(quickstart, capsys, cli_error):
    before = (quickstart / "report" / "report.md").stat().st_mtime_ns
    assert main(["pipeline", "--out", str(quickstart), *REDUCED]) == 0
    assert capsys.readouterr().out.count("done earlier, skipped") == 7
    assert (quickstart / "report" / "report.md").stat().st_mtime_ns == before
    cli_error(["pipeline", "--out", quickstart, *REDUCED, "--set", "train.optim.lr=1e-3"],
              ["stage train: finished", "another config"])
    cli_error(["pipeline", "--out", quickstart, *REDUCED, "--set", "collect.seed=5"], "stage collect: finished")


@pytest.mark.slow
def test_a_killed_pipeline_continues_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pipeline", "--out", str(out), *REDUCED, "--set=train.optim.max_steps=8"]
    env = edist.cpu_env({"PYTHONPATH": str(ROOT)})
    p = subprocess.Popen([sys.executable, "-m", "e2wm.cli", *args], env=env, cwd=tmp_path, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = out / "train" / "lora" / "checkpoints"
    # killed inside the train stage
    wait_for(lambda: p.poll() is not None or any(ckpts.glob("step-*")), 600, "the first training checkpoint")
    assert p.poll() is None, "the pipeline ended before its first checkpoint"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    state = json.loads((out / "pipeline.json").read_text())["stages"]
    assert state["fisher"]["done"] and not state["train"]["done"]
    assert main(args) == 0
    log = capsys.readouterr().out
    assert log.count("done earlier, skipped") == 4                 # collect, data, model, fisher
    assert "(resumed from " in log and (out / "report" / "report.md").is_file()


@pytest.mark.slow
def test_launcher_ray_gives_the_adapter_of_launcher_deepspeed(quickstart, tmp_path, capsys):
    """The fisher and train stages of the reduced quickstart as 2 Ray Train workers and as 2 torchrun ranks
    (deepspeed launcher on CPU), from the same collection, data and base model: the same adapters."""
    import shutil

    from safetensors.torch import load_file
    finished = json.loads((quickstart / "pipeline.json").read_text())["stages"]
    adapters = {}
    for launcher in ("ray", "deepspeed"):
        out = tmp_path / launcher
        out.mkdir()
        for stage in ("collect", "data", "model"):
            shutil.copytree(quickstart / stage, out / stage, symlinks=True)
        (out / "pipeline.json").write_text(json.dumps({"stages": {s: finished[s] for s in ("collect", "data",
                                                                                            "model")}}))
        assert main(["pipeline", "--out", str(out), *REDUCED, "--stages", "collect,data,model,fisher,train",
                     "--launcher", launcher, "--workers", "2"]) == 0
        assert capsys.readouterr().out.count("done earlier, skipped") == 3
        adapters[launcher] = {run: load_file(str(out / "train" / run / "adapter" / "adapter_model.safetensors"))
                              for run in ("lora", "ewc_lora")}
    for run, tensors in adapters["ray"].items():
        other = adapters["deepspeed"][run]
        assert tensors.keys() == other.keys() and all(torch.equal(tensors[k], other[k]) for k in tensors), run


def test_a_stage_whose_inputs_are_not_finished_is_refused(tmp_path, cli_error):
    cli_error(["pipeline", "--out", tmp_path / "run", *REDUCED, "--stages", "fisher"],
              ["stage fisher needs stage(s) collect, data, model", "--stages"])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_redo_runs_a_changed_stage_and_what_follows_again(tmp_path, capsys, cli_error):
    """A changed data config is refused with the way out named; `--redo data` rebuilds the data (and would
    rerun every later stage) while the finished collection is kept; an unknown stage is one line."""
    out, stages = tmp_path / "run", ["--stages", "collect,data"]
    assert main(["pipeline", "--out", str(out), *REDUCED, *stages]) == 0
    first = json.loads((out / "pipeline.json").read_text())["stages"]
    shard = sorted((out / "collect").glob("shard-*.jsonl"))[0].read_bytes()
    changed = [*REDUCED, "--set", "data.seed=5", *stages]
    capsys.readouterr()
    cli_error(["pipeline", "--out", out, *changed], ["stage data: finished", "--redo data"])
    cli_error(["pipeline", "--out", out, *changed, "--redo", "nonsense"], ["--redo", "nonsense"])
    capsys.readouterr()
    assert main(["pipeline", "--out", str(out), *changed, "--redo", "data", "--check"]) == 0
    assert "redo: data, model, fisher, train, eval, report" in capsys.readouterr().out
    assert json.loads((out / "pipeline.json").read_text())["stages"] == first   # --check wrote nothing
    assert main(["pipeline", "--out", str(out), *changed, "--redo", "data"]) == 0
    log = capsys.readouterr().out
    assert "collect: done earlier, skipped" in log and "--redo: removing" in log
    again = json.loads((out / "pipeline.json").read_text())["stages"]
    assert again["collect"] == first["collect"] and again["data"]["done"]
    assert again["data"]["sha256"] != first["data"]["sha256"]
    assert sorted((out / "collect").glob("shard-*.jsonl"))[0].read_bytes() == shard
