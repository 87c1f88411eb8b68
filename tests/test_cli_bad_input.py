"""Bad command lines: usage errors and benchmark flags are one line naming the flag, exit 2."""
import pytest

CASES = [
    ("no-command", [], "COMMAND"),
    ("unknown-command", ["fly"], "invalid choice: 'fly'"),
    ("world-without-what", ["world"], "WHAT"),
    ("bench-without-what", ["bench"], "WHAT"),
    ("bench-unknown", ["bench", "speed"], "invalid choice: 'speed'"),
    ("unknown-flag", ["report", "r", "--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
    ("world-demo-seed-negative", ["world", "demo", "--seed", "-5"], "--seed"),
    ("world-demo-seed-text", ["world", "demo", "--seed", "one"], "--seed"),
    ("conformance-programs-zero", ["world", "conformance", "--programs", "0"], "--programs"),
    ("conformance-random-steps-negative", ["world", "conformance", "--random-steps", "-1"], "--random-steps"),
    ("bench-world-steps-negative", ["bench", "world", "--steps", "-1"], "--steps"),
    ("bench-world-steps-huge", ["bench", "world", "--steps", str(10**12)], "--steps"),
    ("bench-world-steps-float", ["bench", "world", "--steps", "1e9"], "--steps"),
    ("bench-mcts-simulations-zero", ["bench", "mcts", "--simulations", "0"], "--simulations"),
    ("bench-mcts-official-huge", ["bench", "mcts", "--official-simulations", str(10**10)],
     "--official-simulations"),
    ("bench-mcts-seed-negative", ["bench", "mcts", "--seed", "-1"], "--seed"),
    ("bench-collect-workers-text", ["bench", "collect", "--workers", "a,b"], "--workers"),
    ("bench-collect-workers-zero", ["bench", "collect", "--workers", "0,2"], "--workers"),
    ("bench-collect-workers-huge", ["bench", "collect", "--workers", "1,100000"], "--workers"),
    ("bench-collect-units-zero", ["bench", "collect", "--units", "0"], "--units"),
    ("bench-collect-simulations-huge", ["bench", "collect", "--simulations", str(10**11)], "--simulations"),
    ("bench-train-rows-zero", ["bench", "train", "--rows", "0"], "--rows"),
    ("bench-train-steps-negative", ["bench", "train", "--steps", "-3"], "--steps"),
    ("bench-train-global-batch-zero", ["bench", "train", "--global-batch", "0"], "--global-batch"),
    ("bench-train-micro-batch-huge", ["bench", "train", "--micro-batch", "100000"], "--micro-batch"),
    ("bench-train-precision", ["bench", "train", "--precision", "fp8"], "--precision"),
    ("bench-train-zero-stage", ["bench", "train", "--zero-stage", "4"], "--zero-stage"),
    ("bench-train-model-shape", ["bench", "train", "--model", "shape:nope"], "unknown shape 'nope'"),
    ("bench-eval-items-zero", ["bench", "eval", "--items", "0"], "--items"),
    ("bench-eval-words-negative", ["bench", "eval", "--words", "-1"], "--words"),
    ("bench-plans-scenes-zero", ["bench", "plans", "--scenes", "0"], "--scenes"),
    ("bench-plans-workers-zero", ["bench", "plans", "--workers", "0"], "--workers"),
    ("bench-plans-simulations-text", ["bench", "plans", "--simulations", "x"], "--simulations"),
    ("bench-ewc-extra", ["bench", "ewc", "--steps", "3"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line(cli_error, argv, names):
    cli_error(argv, names)


# YAML whose alias holds itself: PyYAML builds a list that contains itself, which every later walk (deep
# copies, typed building, hashing) would follow until RecursionError
RECURSIVE = {
    "list": "activities: &x [*x]\n",
    "nested": "workers: 2\nscenes: [1, &x [2, [3, *x]]]\n",
    "in-a-mapping": "runs:\n  lora: {regularizer: &x [{kind: *x}]}\n",
}


def _config(tmp, text):
    p = tmp / "job.yaml"
    p.write_text(text)
    return p


# (id, command line from (tmp_path, config file)): every command that takes --config
CONFIG_COMMANDS = [
    ("collect", lambda t, c: ["collect", "--config", c, "--out", t / "out"]),
    ("collect-check", lambda t, c: ["collect", "--config", c, "--check"]),
    ("build-data", lambda t, c: ["build-data", "--episodes", t / "episodes", "--out", t / "out", "--config", c]),
    ("train", lambda t, c: ["train", "--config", c]),
    ("pipeline", lambda t, c: ["pipeline", "--config", c, "--out", t / "out"]),
    ("pipeline-check", lambda t, c: ["pipeline", "--config", c, "--check"]),
]


@pytest.mark.parametrize("text", RECURSIVE.values(), ids=RECURSIVE)
@pytest.mark.parametrize("make", [c[1] for c in CONFIG_COMMANDS], ids=[c[0] for c in CONFIG_COMMANDS])
def test_a_recursive_yaml_alias_is_refused_naming_the_file(tmp_path, cli_error, make, text):
    argv = make(tmp_path, _config(tmp_path, text))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    cli_error(argv, ["job.yaml", "recursive YAML alias"])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*")} == before


def test_a_shared_alias_that_is_no_cycle_still_loads():
    from e2wm.config import load_yaml
    assert load_yaml("a: &x [1, {b: 2}]\nc: [*x, *x]\n", "f.yaml") == {"a": [1, {"b": 2}], "c": [[1, {"b": 2}]] * 2}


def test_a_closed_output_pipe_ends_quietly(monkeypatch, capsys):
    """`e2wm plan --list | head -1`: the reader leaves; no BrokenPipeError traceback, exit 141."""
    import io
    import os
    import sys

    from e2wm.cli import main

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return devnull

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    monkeypatch.setattr(sys, "stdout", Closed())
    try:
        assert main(["plan", "--list"]) == 141
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert "Traceback" not in capsys.readouterr().err
