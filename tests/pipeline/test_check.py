"""`e2wm pipeline --check` and the checks every pipeline makes before its first stage (issue 20): the paper presets'
global batch of 20 in micro-batches of 5 passes on any number of ranks; a run whose DeepSpeed JSON that world
size cannot satisfy fails in one line naming the run, before anything is written."""
import json

import pytest

from e2wm.cli import main

PAPER = ("gpt-neo-1.3b", "gpt-j-6b", "llama-13b")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """General text with enough documents for the paper presets (20,000 for the Fisher, 200 for perplexity)."""
    f = tmp_path_factory.mktemp("corpus") / "general.jsonl"
    f.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(20_200)))
    return f


@pytest.fixture(scope="module")
def fixed_batch(tmp_path_factory):
    """A DeepSpeed JSON that fixes train_batch_size at E2WM's 20 (right on 1, 2 and 4 ranks only)."""
    f = tmp_path_factory.mktemp("ds") / "ds-fixed.json"
    f.write_text(json.dumps({"train_batch_size": 20, "zero_optimization": {"stage": 2}}))
    return f


@pytest.mark.parametrize("preset", PAPER)
@pytest.mark.parametrize("workers", [1, 2, 4, 8, 16, 32])
def test_paper_presets_check_on_any_world_size(tmp_path, corpus, capsys, preset, workers):
    out = tmp_path / "run"
    assert main(["pipeline", "--preset", preset, "--check", "--workers", str(workers), "--set", f"corpus={corpus}",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    steps = -(-20 // (workers * 5))
    for run in ("lora", "ewc_lora"):
        assert f"runs.{run}: 20 rows per step (shuffle) over {workers} rank(s) × {steps} micro-batch(es) of <= 5" \
            in printed
    assert "a hub id, not checked offline" in printed and f"{workers} rank(s)" in printed.splitlines()[-2]
    assert not out.exists()


def test_a_batch_deepspeed_cannot_take_on_this_world_size_names_the_run(tmp_path, corpus, fixed_batch, capsys,
                                                                         cli_error):
    out = tmp_path / "run"
    args = ["pipeline", "--preset", "gpt-neo-1.3b", "--check", "--set", f"corpus={corpus}", "--out", out,
            "--set", f"runs.ewc_lora.deepspeed.config={fixed_batch}"]
    assert main([str(a) for a in [*args, "--workers", "4"]]) == 0
    capsys.readouterr()
    cli_error([*args, "--workers", "8"], ["runs.ewc_lora:", "ds-fixed.json", "train_batch_size is 20",
                                          "(5 × 1 × 8) gives 40"])
    assert not out.exists()


def test_a_pipeline_refuses_such_a_run_before_its_first_stage(tmp_path, fixed_batch, cli_error):
    out = tmp_path / "run"
    cli_error(["pipeline", "--launcher", "deepspeed", "--workers", "3", "--out", out,
               "--set", f"train.deepspeed.config={fixed_batch}"], ["runs.lora:", "train_batch_size is 20"])
    assert not out.exists()   # collection did not start


def test_check_says_what_it_cannot_find(tmp_path, cli_error):
    cli_error(["pipeline", "--preset", "gpt-neo-1.3b", "--check", "--out", tmp_path / "run",
               "--set", f"corpus={tmp_path / 'pile-20k.jsonl'}"], ["corpus", "pile-20k.jsonl"])
