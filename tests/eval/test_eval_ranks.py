"""`e2wm eval` under torchrun: 2 gloo ranks write the same results.json as 1 process, perplexity's
sliding windows included (dealt out over the ranks, each scoring about half the tokens)."""
import json
import re

import pytest
import torch
from run_helpers import check, launch

from e2wm.cli import main
from e2wm.train import dist as edist

pytestmark = pytest.mark.slow


def test_two_ranks_equal_one(tmp_path, built_dataset):
    args = ["eval", "--suites", str(built_dataset / "eval"), "--only", "count_qa", "act_recog", "obj_path",
            "plan_gen", "--limit", "5", "--num-beams", "2", "--max-new-tokens", "10",
            "--ppl-corpus", "builtin:pydoc", "--ppl-docs", "2", "--ppl-max-length", "64", "--ppl-stride", "48"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as each rank runs (cpu_env): CPU kernels may add up differently on more threads
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    two = check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.cli", [*args, "--out", str(tmp_path / "two")])))
    one = (tmp_path / "one" / "results.json").read_bytes()
    assert one == (tmp_path / "two" / "results.json").read_bytes()
    results = json.loads(one)
    assert results["suites"]["count_qa"]["n"] == 5
    ppl = results["perplexity"]
    assert ppl["stride"] == 48 and ppl["tokens"] > 1000   # long documents: many windows to deal out
    shares = [int(n) for n in re.findall(r"rank \d: (\d+) tokens in \d+ windows", two.stdout)]
    assert len(shares) == 2 and sum(shares) == ppl["tokens"] and abs(shares[0] - shares[1]) <= 64, two.stdout
