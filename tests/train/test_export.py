"""Export under ZeRO-3: a complete PEFT adapter that reproduces the engine's logits, alone and merged."""
import pytest
import torch
from train_helpers import PROBE

from e2wm.cli import main

pytestmark = pytest.mark.slow


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits.float()


def test_adapter_is_complete_and_loads_with_peft(zero3_jobs, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapter = zero3_jobs["ewc_lora"] / "adapter"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(weights) == 2 * (2 * 2 + 1)                  # A and B for q/v of 2 layers and lm_head
    assert all(w.numel() > 0 for w in weights.values())      # not the empty shards of a ZeRO-3 save
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)   # trained, not the init
    engine = torch.load(zero3_jobs["ewc_lora"] / "probe_logits.pt")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft = PeftModel.from_pretrained(base, str(adapter))
    assert (_logits(peft) - engine).abs().max() <= 1e-5
    assert (_logits(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))) - engine).abs().max() > 1e-3


def test_merged_model_gives_the_same_logits(zero3_jobs, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    adapter = zero3_jobs["ewc_lora"] / "adapter"
    assert main(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))
    engine = torch.load(zero3_jobs["ewc_lora"] / "probe_logits.pt")
    assert (_logits(merged) - engine).abs().max() <= 1e-5


def test_export_command_rewrites_the_same_adapter(zero3_jobs, tmp_path):
    from safetensors.torch import load_file

    run = zero3_jobs["ewc_lora"]
    assert main(["export", str(run), "--out", str(tmp_path / "again")]) == 0
    a = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "again" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "again" / "tokenizer.json").is_file()


def test_full_fine_tuning_exports_a_model(zero3_jobs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(zero3_jobs["ewc_z3"] / "model"))
    assert model.config.model_type == "llama"


@pytest.mark.parametrize("stage", [0, 2])
def test_full_fine_tuning_exports_the_engines_weights_at_zero_0_and_2(stage, tmp_path, tiny_model_dir,
                                                                       built_dataset):
    """One step of full fine-tuning in this process; its model/ holds the engine's final weights."""
    from run_helpers import tiny_train_config
    from safetensors.torch import load_file
    from train_helpers import write_config

    cfg = tiny_train_config(tmp_path / "run", tiny_model_dir, built_dataset, lora={"enabled": False},
                            deepspeed={"zero_stage": stage}, optim={"lr": 1e-2})
    assert main(["train", "--config", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    got, base = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "run" / "model", tiny_model_dir))
    assert got.keys() == base.keys() and any(not torch.equal(got[k], base[k]) for k in got)   # trained


@pytest.mark.parametrize("args, names", [
    (["export", "no/such/run", "--out", "x"], "no/such/run"),
    (["merge", "--adapter", "no/such/adapter", "--out", "x"], "no/such/adapter"),
])
def test_bad_paths_are_one_line_errors(args, names, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0]
