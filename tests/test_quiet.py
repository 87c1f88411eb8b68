"""Successful train, export, merge and eval runs print nothing on stderr but our own lines and progress,
and no library chatter on stdout either (each command in a fresh process, as a user runs it: warnings
filters and DeepSpeed's logger are per process). A one-process CPU run does not build DeepSpeed's
shared-memory comm op, so a stale lock of that op (a killed build) does not concern it."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from run_helpers import tiny_train_config, write_rows

from e2wm.train.extensions import SHM_OP

OURS = re.compile(r"^(e2wm[ :]|step \d|wrote |  \S|\[progress\]|progress:)")
CHATTER = ("FutureWarning", "warnings.warn", "Setting accelerator", "built successfully", "Traceback")


def _run(args, cwd, env):
    p = subprocess.run([sys.executable, "-m", "e2wm.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout, p.stderr


@pytest.mark.slow
def test_successful_runs_print_only_our_lines(tmp_path, tiny_model_dir):
    write_rows(tmp_path / "data.jsonl")
    (tmp_path / "mc.jsonl").write_text(json.dumps({"input": "Question: to wash, use\nAnswer:",
                                                   "answer_list": ["soap", "cup"], "answer": "soap"}) + "\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tiny_train_config("run", tiny_model_dir, "data.jsonl")))
    ext = tmp_path / "ext"
    (ext / SHM_OP).mkdir(parents=True)
    lock = ext / SHM_OP / "lock"
    lock.write_text("")
    os.utime(lock, (1, 1))   # a killed build's lock: it must not matter to one process
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ext)}
    env.pop("PYTHONWARNINGS", None)
    env.pop("DS_ACCELERATOR", None)   # let DeepSpeed detect the accelerator, as on a user's machine
    runs = [["train", "--config", "t.yaml"], ["export", "run", "--out", "exp"],
            ["merge", "--adapter", "run/adapter", "--out", "merged"],
            ["eval", "--model", str(tiny_model_dir), "--adapter", "run/adapter", "--suites", "mc.jsonl",
             "--out", "ev", "--ppl-corpus", "builtin:pydoc", "--ppl-docs", "2", "--ppl-max-length", "32"]]
    for args in runs:
        out, err = _run(args, tmp_path, env)
        for line in err.splitlines():
            assert not line.strip() or OURS.match(line), f"e2wm {args[0]}: stderr line not ours: {line!r}"
        for text in CHATTER:
            assert text not in out + err, f"e2wm {args[0]}: {text!r} in its output:\n{out}\n{err}"
    assert (tmp_path / "merged" / "config.json").is_file() and (tmp_path / "ev" / "results.json").is_file()
    assert sorted(p.name for p in (ext / SHM_OP).iterdir()) == ["lock"]   # nothing was built, the lock untouched
