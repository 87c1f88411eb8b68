"""Parity with E2WM's objective (`run.py`), re-implemented here from its formula, not from our code:

  loss = Σ_t w_t·ℓ_t / #{t : w_t > 0},  w_t = attention_mask × (1 − prompt_mask) × task_weight
       + λ · Σ_{LoRA layers} Σ_jk C_jk · (s · (B A)_jk)²,

where C are the int8 codes bitsandbytes made when E2WM loaded its fp16 Fisher checkpoint with
`load_in_8bit=True` (row-wise absmax: round(127 · F_jk / max_k |F_jk|), the scale never applied;
../shared/notes/e2wm-paper.md §3.1, §3.3). The reference merges s·B·A into a plain transformers model
(no peft) and reads the Fisher file with safetensors itself.

Our side is the real trainer (`python -m e2wm.train` on 2 gloo ranks) at ZeRO-2 and ZeRO-3, on a
GPT-Neo (E2WM's 1.3B architecture) whose hidden size 33 makes 33×33 q/v weights: 1,089 elements split
545/544 over 2 ZeRO-3 ranks, so row 16 spans both partitions. The Fisher plants that row's maximum
on rank 1's side: codes computed from a partition alone would be ~100× too large on rank 0's side.
"""
import json
import re

import pytest
import torch
from safetensors import safe_open
from run_helpers import check, launch
from train_helpers import metrics, write_config

from e2wm.train import dist as edist
from e2wm.train.fisher_io import save_fisher

LAM, ALPHA, R = 2.0, 32, 8
ROWS = [  # E2WM's format: training text f"{input} {ref}\n", loss on the answer only, per-task weights
    {"task": "plan_generation", "input": "Q: How to watch tv? Given items include tv, sofa.\nA:",
     "ref": "Walk to home office. Switch on tv. Sit on sofa.", "weight": 1.0},
    {"task": "activity_recognition", "input": "Given a household activity plan as follows:\nWalk to bathroom. "
     "Grab toothbrush.\nQ: What is the name of the activity?\nA:", "ref": "brush teeth", "weight": 0.7},
    {"task": "counting", "input": "Q: Sue put a cup on the desk and a pen on the bed. How many items are there "
     "on the desk?\nA:", "ref": "There is one item on the desk. It is the cup.", "weight": 1.0},
    {"task": "object_path", "input": "Anna took the hat. Anna went to the kitchen. Anna left the hat.\n"
     "Question: What is the order of the rooms where the hat appeared?\nAnswer:", "ref": "bedroom, kitchen",
     "weight": 1.0},
]


@pytest.fixture(scope="module")
def neo_dir(tmp_path_factory):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from e2wm.train.model import byte_tokenizer
    d = tmp_path_factory.mktemp("tiny-neo")
    torch.manual_seed(0)
    cfg = GPTNeoConfig(vocab_size=259, hidden_size=33, num_layers=2, num_heads=3, intermediate_size=66,
                       attention_types=[[["global", "local"], 1]], max_position_embeddings=512, window_size=64,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)
    GPTNeoForCausalLM(cfg).save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    return d


def _targets():
    return [f"transformer.h.{i}.attn.attention.{m}.weight" for i in range(2) for m in ("q_proj", "v_proj")]


@pytest.fixture(scope="module")
def planted_fisher(tmp_path_factory):
    """Positive values over 6 decades, a zero row, values fp16 flushes to 0, and row 16's maximum at
    flat index 560 (rank 1's partition) while the row starts at 528 (rank 0's)."""
    g = torch.Generator().manual_seed(5)
    tensors = {}
    for name in _targets():
        f = torch.exp(torch.randn(33, 33, generator=g) * 3.0) * 1e-4
        f[3] = 0.0
        f[7, :5] = 1e-9                      # below fp16's smallest subnormal: E2WM's codes are 0 there
        f[16] = f[16].clamp(max=1.0)
        f[16, 560 - 16 * 33] = 100.0
        tensors[name] = f
    return save_fisher(tmp_path_factory.mktemp("fisher"), tensors, {"model": "planted", "modules": "lora-targets"})


def _e2wm_codes(f: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' LLM.int8 weight quantisation of fp16(F), as E2WM's `run.py` saw it: per row,
    scale = 127 / absmax(row), code = round-to-nearest(x · scale) as int8 (a zero row stays zero)."""
    half = f.to(torch.float16)
    codes = torch.zeros(f.shape, dtype=torch.int8)
    for j in range(f.shape[0]):
        row = half[j].float()
        absmax = row.abs().max()
        if absmax > 0:
            codes[j] = torch.round(row * (127.0 / absmax)).to(torch.int8)
    return codes


def _reference(neo_dir, fisher_file, trainable_file):
    """E2WM's CE and λ·penalty of all ROWS at the LoRA weights in `trainable_file`."""
    from transformers import AutoTokenizer, GPTNeoForCausalLM

    model = GPTNeoForCausalLM.from_pretrained(str(neo_dir)).float().eval()
    tok = AutoTokenizer.from_pretrained(str(neo_dir))
    s = ALPHA / R
    lora = {}
    with safe_open(str(trainable_file), "pt") as fh:
        for key in fh.keys():
            m = re.fullmatch(r"param/base_model\.model\.(.+)\.lora_([AB])\.default\.weight", key)
            if m:
                lora.setdefault(m.group(1) + ".weight", {})[m.group(2)] = fh.get_tensor(key).float()
    assert sorted(lora) == sorted(_targets())
    params = dict(model.named_parameters())
    penalty = 0.0
    with torch.no_grad(), safe_open(str(fisher_file), "pt") as fh:
        for name, ab in lora.items():
            delta = s * ab["B"] @ ab["A"]
            params[name] += delta
            penalty += float((_e2wm_codes(fh.get_tensor(name)).float() * delta.pow(2)).sum())
        num = den = 0.0
        for row in ROWS:
            ids = tok(f"{row['input']} {row['ref']}\n")["input_ids"]
            prompt = len(tok(row["input"])["input_ids"])
            logits = model(torch.tensor([ids])).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
            w = torch.tensor([row["weight"] if t >= prompt else 0.0 for t in range(1, len(ids))])
            num += float((w * nll).sum())
            den += float((w > 0).sum())
    return num / den, LAM * penalty


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_loss_and_penalty_match_e2wm_run_py(stage, neo_dir, planted_fisher, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = {"out": str(tmp_path / "run"), "seed": 1, "model": {"name_or_path": str(neo_dir)},
           "lora": {"r": R, "alpha": ALPHA, "dropout": 0.0},
           "data": {"path": str(rows), "max_length": 256},
           "optim": {"lr": 2e-2, "weight_decay": 0.01, "grad_clip": 0.0, "max_steps": 2, "global_batch_size": 4,
                     "micro_batch_size": 1, "precision": "fp32"},
           "regularizer": {"kind": "ewc_lora", "lam": LAM, "fisher": str(planted_fisher),
                           "fisher_scale": "e2wm_int8"},
           "deepspeed": {"config": f"zero{stage}"},
           "checkpoint": {"every": 1, "keep_last": 2, "resume": "never"}, "logging": {"tensorboard": False}}
    config = write_config(tmp_path / "train.yaml", cfg)
    check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.train", ["--config", str(config)])))
    # step 2's loss and penalty are taken at the weights after step 1, which its checkpoint holds
    step2 = metrics(tmp_path / "run")[1]
    ce, penalty = _reference(neo_dir, planted_fisher, tmp_path / "run" / "checkpoints" / "step-00000001" /
                             "trainable.safetensors")
    assert penalty > 0.05 * ce   # the penalty bites: not a comparison of zeros
    assert step2["loss"] == pytest.approx(ce, rel=1e-5)
    assert step2["penalty"] == pytest.approx(penalty, rel=1e-5)
    assert step2["penalty_to_ce"] == pytest.approx(penalty / ce, rel=1e-5)
