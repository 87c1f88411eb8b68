"""`e2wm eval` under torchrun: 2 gloo ranks write the same results.json as 1 process."""
import json

import pytest
from run_helpers import check, launch

from e2wm.cli import main
from e2wm.train import dist as edist

pytestmark = pytest.mark.slow


def test_two_ranks_equal_one(tmp_path, built_dataset):
    args = ["eval", "--suites", str(built_dataset / "eval"), "--only", "count_qa", "act_recog", "obj_path",
            "plan_gen", "--limit", "5", "--num-beams", "2", "--max-new-tokens", "10",
            "--ppl-corpus", "builtin:pydoc", "--ppl-docs", "2", "--ppl-max-length", "64"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.cli", [*args, "--out", str(tmp_path / "two")])))
    one = (tmp_path / "one" / "results.json").read_bytes()
    assert one == (tmp_path / "two" / "results.json").read_bytes()
    assert json.loads(one)["suites"]["count_qa"]["n"] == 5
