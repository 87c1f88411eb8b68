"""fisher_io under ZeRO-3 at a world size that does not divide a weight's numel (3 gloo ranks)."""
import json
import subprocess
from pathlib import Path

import pytest

from e2wm.train import dist as edist
from e2wm.train.fisher import compute_fisher, select_base_params
from e2wm.train.fisher_io import weight_sums
from e2wm.train.fisher_run import lora_model
from e2wm.train.model import byte_tokenizer, tiny_causal_lm


@pytest.mark.slow
def test_model_check_ignores_the_last_ranks_padding_at_3_ranks(tmp_path):
    """q_proj (32 x 32 = 1024), the norms (32) and the embeddings (259 x 32) leave padding on rank 2; filled
    with garbage there, the fingerprint still equals one process's and the Fisher of this model is read. ~15 s."""
    fisher = tmp_path / "fisher"
    model = lora_model(tiny_causal_lm())
    compute_fisher(model, ["some general text", "and more of it"], byte_tokenizer(), max_length=24, modules="all",
                   out_dir=fisher, model_name="tiny")
    want = weight_sums(select_base_params(model, "all"))
    assert model.base_model.model.model.layers[0].self_attn.q_proj.weight.numel() % 3 != 0
    cmd = edist.torchrun_cmd(3, edist.free_port(), str(Path(__file__).with_name("fisher_io_worker.py")),
                             [str(tmp_path), str(fisher)])
    p = subprocess.run(cmd, env=edist.cpu_env({"PYTHONPATH": str(Path(__file__).parents[2])}), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    assert "model.layers.0.self_attn.q_proj.weight" in ranks[2]["padded"]   # the case under test happened
    for r in ranks:
        assert r["read"] == "ok"
        assert r["sums"].keys() == want.keys()
        assert all(r["sums"][k] == pytest.approx(want[k], rel=1e-9) for k in want)
