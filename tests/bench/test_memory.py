"""`e2wm bench memory`: saved-tensor bytes against hand counts, meta against real tensors, the CLI."""
import json

import pytest
import torch

from e2wm.bench.memory import Saved, estimate, measure
from e2wm.cli import main
from e2wm.train.model import tiny_config

B, T, H, I, HEADS, R = 2, 16, 32, 64, 4, 8   # tiny_config's shape; add_lora's default rank


def test_linear_stack_counts_each_storage_once_and_no_weights():
    # Linear(a, b) -> ReLU -> Linear(b, c), weights trainable, input without grad:
    # the first Linear saves x (its weight's gradient needs it); ReLU saves its output, which the second
    # Linear saves again as its input (one storage, counted once); the second Linear also saves its weight
    # (for the input's gradient), a parameter, not counted. So 4·B·a + 4·B·b bytes.
    a, b, c, n = 5, 7, 3, 11
    net = torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, c))
    x = torch.randn(n, a)
    with Saved(net) as rec:
        net(x)
    assert rec.by_dtype == {"float32": 4 * n * a + 4 * n * b}
    with Saved(net.to(torch.bfloat16)) as rec:
        net(x.to(torch.bfloat16))
    assert rec.by_dtype == {"bfloat16": 2 * n * a + 2 * n * b}


def _hand_layer(e: int) -> int:
    """Bytes one tiny Llama layer saves in LoRA training (q/v LoRA, frozen base, fused attention), `e`
    bytes per activation element; norms compute in fp32."""
    n = B * T
    norms = 2 * (4 * n * H + 4 * n)   # input and post-attention RMSNorm: fp32 input and its rsqrt
    normed = e * n * H                # the normed input, saved by lora_A of q and v (one tensor)
    lora = 2 * e * n * R              # lora_A's outputs, saved by lora_B
    attention = 4 * e * n * H + 4 * B * HEADS * T   # q, k, v, output; fp32 log-sum-exp
    mlp = 3 * e * n * I               # gate and up outputs, silu(gate)
    return norms + normed + lora + attention + mlp


@pytest.fixture(scope="module")
def tiny_meta():
    return measure(tiny_config(hidden=H, heads=HEADS), B, T, torch.bfloat16, torch.device("meta"))


def test_tiny_llama_layer_matches_hand_count(tiny_meta):   # ~3 s (the fixture)
    assert tiny_config(hidden=H, heads=HEADS).intermediate_size == I
    e, m = 2, tiny_meta
    assert sum(m[("train", False)]["layer"].values()) == _hand_layer(e)
    assert sum(m[("fisher", False)]["layer"].values()) == _hand_layer(e)   # its kept inputs are LoRA's
    for stage in ("train", "fisher"):   # checkpointing keeps each layer's input only
        assert sum(m[(stage, True)]["layer"].values()) == e * B * T * H
        assert m[(stage, True)]["miss_at_3"] == m[(stage, False)]["miss_at_3"] == 0


def test_meta_counts_what_real_tensors_save(tiny_meta):   # ~3 s
    real = measure(tiny_config(hidden=H, heads=HEADS), B, T, torch.bfloat16, torch.device("cpu"))
    assert tiny_meta == real


def test_checkpointing_lowers_the_estimate():   # ~3 s
    r = estimate("tiny", micro_batch=B, seq=T, world=4, layers=16)
    rows = {(x["stage"], x["checkpointing"]): x for x in r["rows"]}
    for stage in ("train", "fisher"):
        off, on = rows[(stage, False)], rows[(stage, True)]
        assert on["activations_bytes"] < off["activations_bytes"] / 2
        assert on["recompute_bytes"] == off["layer_bytes"]
        assert off["activations_bytes"] == off["outside_bytes"] + 16 * off["layer_bytes"]
        for z in (2, 3):
            assert on[f"zero{z}_gib"] < off[f"zero{z}_gib"]
        assert off["zero3_gib"] < off["zero2_gib"]   # weights and the Fisher partitioned over 4 ranks


def test_cli_prints_table_and_json(capsys):   # ~3 s
    assert main(["bench", "memory", "--model", "tiny", "--micro-batch", "2", "--seq", "16", "--world", "2",
                 "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    r = json.loads(out[-1])
    assert r["bench"] == "memory" and r["world"] == 2 and r["seq"] == 16 and len(r["rows"]) == 4
    table = "\n".join(out[:-1])
    assert "per layer (measured)" in table and "micro-batch 2 rows x 16 tokens" in table and "world 2" in table


def test_cli_refuses_bad_input_in_one_line(capsys):
    assert main(["bench", "memory", "--model", "shape:nope"]) == 2
    assert main(["bench", "memory", "--model", "tiny", "--seq", "5000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown shape" in err[0] and "--seq: 5000" in err[1]
