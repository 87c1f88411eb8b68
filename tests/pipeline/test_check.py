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


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound by this test, never listening."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _finished(out, stages):
    """OUT with a state file saying `stages` of the quickstart preset finished (their outputs are not needed
    by the checks)."""
    from e2wm.config import read_yaml
    from e2wm.pipeline.config import PipelineConfig
    from e2wm.pipeline.run import _hashes
    from e2wm.pipeline.state import State
    cfg = PipelineConfig.from_dict({**read_yaml(None, "pipeline-quickstart.yaml")[0], "out": str(out)})
    out.mkdir()
    state, hashes = State(out), _hashes(cfg)
    for s in stages:
        state.mark(s, hashes[s], True)
    return out


def _foreign_shard(tmp):
    """A folder whose collect/ holds a shard no manifest vouches for: collection would refuse it."""
    (tmp / "run" / "collect").mkdir(parents=True)
    (tmp / "run" / "collect" / "shard-00000.jsonl").write_text("not ours\n")
    return tmp / "run"


# (id, argv from (tmp_path, closed port), what the line must name): each fails before OUT or its state
# file is made, and leaves an existing OUT byte-identical
FIRST_CHECKS = [
    ("address-unreachable", lambda t, p: ["--address", f"127.0.0.1:{p}", "--out", t / "run"],
     lambda p: [f"address 127.0.0.1:{p}", "within 10 s"]),
    ("address-unreachable-collect-only", lambda t, p: ["--address", f"127.0.0.1:{p}", "--stages", "collect",
                                                       "--out", t / "run"], lambda p: [f"127.0.0.1:{p}"]),
    ("address-unreachable-ray-launcher", lambda t, p: [
        "--address", f"127.0.0.1:{p}", "--launcher", "ray", "--workers", "2", "--stages", "fisher",
        "--out", _finished(t / "run", ("collect", "data", "model"))], lambda p: [f"127.0.0.1:{p}", "within 10 s"]),
    ("address-malformed", lambda t, p: ["--address", "head-node", "--out", t / "run"], lambda p: ["'head-node'"]),
    ("address-port-zero", lambda t, p: ["--address", "127.0.0.1:0", "--stages", "collect", "--out", t / "run"],
     lambda p: ["address='127.0.0.1:0'"]),
    ("collect-folder-foreign-shard", lambda t, p: ["--stages", "collect", "--force", "--out", _foreign_shard(t)],
     lambda p: ["shard-00000.jsonl", "no manifest.json"]),
]


@pytest.mark.parametrize("make,names", [c[1:] for c in FIRST_CHECKS], ids=[c[0] for c in FIRST_CHECKS])
@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_a_pipeline_that_fails_a_check_writes_nothing(tmp_path, closed_port, cli_error, make, names, check):
    argv = ["pipeline", *make(tmp_path, closed_port), *(["--check"] if check else [])]
    before = {p: p.is_dir() or p.read_bytes() for p in tmp_path.rglob("*")}
    cli_error(argv, names(closed_port))
    assert {p: p.is_dir() or p.read_bytes() for p in tmp_path.rglob("*")} == before   # no OUT, no pipeline.json
