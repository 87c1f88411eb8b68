"""Any world size gives the same update (issue 20): E2WM's 6B batch settings (global batch 20 of shuffled rows,
normalised as 4 groups of 5, its 4 accumulated micro-batches; micro-batch 5) on 1 rank (4 accumulation steps), 3 ranks (2 steps of 3-4 rows: the batch does not divide) and 4 ranks
(1 step). The second step's batch is the epoch's short last one, 4 rows: on 3 ranks two slots are zero-weight
fillers. Adam's first update is nearly lr·sign(g), blind to the gradient's scale, so the logged loss and
grad_norm of step 1 and the parameters after step 2 are compared as well; and Adam's eps is 1, far above every
|g|, which makes its update lr·g/(|g| + eps), about proportional to g. (With eps 1e-8 an entry with |g| near
1e-8 turns fp32 rounding of the summed gradient, ~1e-10, into a parameter change of ~1e-4 of the largest.)"""
import json

import pytest
import torch
from safetensors.torch import load_file
from run_helpers import check, launch
from train_helpers import TARGETS, metrics, write_config

from e2wm.train import dist as edist
from e2wm.train.data import read_rows
from e2wm.train.model import add_lora, byte_tokenizer, load_model, tiny_causal_lm

pytestmark = pytest.mark.slow
WORLDS = (1, 3, 4)
SEED = 5
TOL = 1e-6   # of the largest parameter change


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny model with a real pad embedding (GPT-Neo's pad is its EOS): the built-in one's is zero, so a
    filler row would have no gradient whatever its weight."""
    d = tmp_path_factory.mktemp("tiny-pad")
    tok, model = byte_tokenizer(), tiny_causal_lm()
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[tok.pad_token_id] = emb[tok.eos_token_id]
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_dir, built_dataset):
    """{world: run dir} of two steps on 24 rows (one batch of 20, one of 4); one torchrun launch per world size."""
    root = tmp_path_factory.mktemp("world-parity")
    rows = root / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in read_rows(str(built_dataset))[:24]))
    out = {}
    for world in WORLDS:
        out[world] = root / f"w{world}"
        cfg = write_config(root / f"w{world}.yaml", {
            "out": str(out[world]), "seed": SEED, "model": {"name_or_path": str(model_dir)},
            "lora": {"r": 8, "alpha": 32, "dropout": 0.0, "target_modules": TARGETS},
            "data": {"path": str(rows), "max_length": 256, "sampling": "shuffle"},
            "optim": {"lr": 1e-3, "eps": 1.0, "weight_decay": 0.01, "grad_clip": 0.0, "max_steps": 2,
                      "global_batch_size": 20, "micro_batch_size": 5, "loss_groups": 4, "precision": "fp32"},
            "regularizer": {"kind": "none"}, "deepspeed": {"config": "zero2"},
            "checkpoint": {"every": 1, "keep_last": 2, "resume": "never"}, "logging": {"tensorboard": False}})
        check(launch(edist.torchrun_cmd(world, edist.free_port(), "e2wm.train", ["--config", str(cfg)])))
    return out


def _params(run, step: int) -> dict[str, torch.Tensor]:
    tensors = load_file(str(run / "checkpoints" / f"step-{step:08d}" / "trainable.safetensors"))
    return {k[6:]: v for k, v in tensors.items() if k.startswith("param/")}


def test_the_world_size_does_not_change_the_update(runs, model_dir):
    start = {n: p.detach() for n, p in add_lora(load_model(str(model_dir)), 8, 32, TARGETS, 0.0, SEED)
             .named_parameters() if p.requires_grad}
    ref = {step: _params(runs[1], step) for step in (1, 2)}
    assert ref[1].keys() == start.keys()
    for step in (1, 2):
        change = max(float((ref[step][n] - start[n]).abs().max()) for n in start)
        assert change > 0
        for world in WORLDS[1:]:
            got = _params(runs[world], step)
            worst = max(float((got[n] - ref[step][n]).abs().max()) for n in start)
            assert worst <= TOL * change, (step, world, worst / change)
    first = {world: metrics(runs[world])[0] for world in WORLDS}
    assert {r["step"] for r in first.values()} == {1} and {r["tokens"] for r in first.values()} == {first[1]["tokens"]}
    for world in WORLDS[1:]:
        for key in ("loss", "grad_norm"):
            assert first[world][key] == pytest.approx(first[1][key], rel=TOL), (world, key)
