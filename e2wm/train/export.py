"""`e2wm export` and `e2wm merge`: checkpoints -> a PEFT adapter directory or a whole HF model.

The adapter comes from the checkpoint's consolidated fp32 LoRA weights, so it is complete whatever
the ZeRO stage that trained it (no empty `torch.Size([0])` tensors). `RUN/run.json` (written when
training starts) says which base model, LoRA settings and tokenizer it belongs to.
"""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.train import checkpoint as ckpt

RUN_INFO = "run.json"


def _run_info(step_path: Path) -> tuple[Path, dict]:
    run_dir = step_path.parent.parent
    f = run_dir / RUN_INFO
    try:
        return run_dir, json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise E2WMError(f"{f}: cannot read the run's description ({e.__class__.__name__}); is {step_path} "
                        f"a step directory of an `e2wm train` run?") from None


def resolve_step(path) -> Path:
    """A step directory, or the newest one of a run directory."""
    p = Path(path)
    if (p / ckpt.STATE).is_file():
        return p
    found = ckpt.latest(p)
    if found is None:
        raise E2WMError(f"{path}: not a checkpoint (no {ckpt.STATE}) and no complete checkpoint under it")
    return found


@contextmanager
def _writing(out):
    """A temporary directory beside `out` that replaces `out` once the block completes."""
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def export(step_path, out) -> Path:
    """A checkpoint (or a run's newest) -> `out`: a PEFT adapter for LoRA runs, else an HF model."""
    step_path = resolve_step(step_path)
    _, info = _run_info(step_path)
    return export_adapter(step_path, out) if info.get("lora") else export_model(step_path, out)


def export_adapter(step_path, out) -> Path:
    """Write adapter_model.safetensors, adapter_config.json and the tokenizer to `out`."""
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    tensors = ckpt.load_trainable(step_path)
    weights = {k[len("param/"):].replace(".default.", "."): v.contiguous()
               for k, v in tensors.items() if k.startswith("param/")}
    if not weights or any(v.numel() == 0 for v in weights.values()):
        raise E2WMError(f"{step_path}: the checkpoint holds empty LoRA weights")
    lora = info["lora_config"]
    with _writing(out) as tmp:
        save_file(weights, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        LoraConfig(task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                   target_modules=lora["target_modules"], fan_in_fan_out=lora["fan_in_fan_out"],
                   base_model_name_or_path=info["base_model"]).save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(run_dir / "tokenizer")).save_pretrained(str(tmp))
    return Path(out)


def export_model(step_path, out) -> Path:
    """A full fine-tuning checkpoint -> an HF model directory (fp32 weights, config, tokenizer)."""
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    try:
        state = get_fp32_state_dict_from_zero_checkpoint(str(step_path), tag="ds")
    except (FileNotFoundError, ValueError):  # ZeRO-0 writes the plain module state instead
        state = torch.load(step_path / "ds" / "mp_rank_00_model_states.pt", map_location="cpu",
                           weights_only=False)["module"]
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(run_dir / "base_config")))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise E2WMError(f"{step_path}: checkpoint weights do not fit the model "
                        f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    with _writing(out) as tmp:
        model.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(run_dir / "tokenizer")).save_pretrained(str(tmp))
    return Path(out)


def merge(adapter_dir, out, base: str | None = None) -> Path:
    """Base model + adapter -> one model that `AutoModelForCausalLM.from_pretrained` loads."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from e2wm.train.model import load_model

    adapter_dir = Path(adapter_dir)
    cfg_file = adapter_dir / "adapter_config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as e:
        raise E2WMError(f"{cfg_file}: not a PEFT adapter directory ({e.__class__.__name__})") from None
    base = base or cfg.get("base_model_name_or_path")
    if not base:
        raise E2WMError(f"{cfg_file}: names no base model; pass --base")
    merged = PeftModel.from_pretrained(load_model(base), str(adapter_dir)).merge_and_unload()
    with _writing(out) as tmp:
        merged.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(tmp))
    return Path(out)
