"""`e2wm export` and `e2wm merge`: checkpoints -> a PEFT adapter directory or a whole HF model.

The adapter comes from the checkpoint's consolidated fp32 LoRA weights, so it is complete whatever
the ZeRO stage that trained it (no empty `torch.Size([0])` tensors). `RUN/run.json` (written when
training starts) says which base model, LoRA settings and tokenizer it belongs to. The exported folder's
marker carries which general-text documents a `kl` run read (and a merge keeps it), so that evaluation,
given only the folder, can keep its perplexity documents apart from them.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.train import checkpoint as ckpt

RUN_INFO = "run.json"
MARKER = "e2wm-export.json"   # marks a folder this module wrote, so a later export may replace it
KL_CORPUS = "kl_corpus"       # run.json's and the marker's record of the kl regulariser's documents


def _run_info(step_path: Path) -> tuple[Path, dict]:
    """(run directory, its run.json) of a step directory, checked for the keys an export needs."""
    from e2wm.files import read_json

    run_dir = step_path.parent.parent
    f = run_dir / RUN_INFO
    try:
        info = read_json(f, "run description")
    except E2WMError as e:
        raise E2WMError(f"{e}; is {step_path} a step directory of an `e2wm train` run?") from None
    lora = info.get("lora_config") if isinstance(info, dict) else None
    ok = isinstance(info, dict) and isinstance(info.get("base_model"), str) and isinstance(info.get("lora"), bool)
    if ok and info["lora"]:
        ok = isinstance(lora, dict) and all(k in lora for k in ("r", "alpha", "dropout", "target_modules",
                                                                 "fan_in_fan_out"))
    if not ok:
        raise E2WMError(f"{f}: not the run description `e2wm train` writes (base_model, lora, lora_config)")
    return run_dir, info


def resolve_step(path) -> Path:
    """A step directory, or the newest one of a run directory (checked: a readable e2wm checkpoint)."""
    from e2wm.files import input_dir

    p = input_dir(path, "checkpoint (a step or run directory)")
    found = p if (p / ckpt.STATE).exists() else ckpt.latest(p)
    if found is None:
        raise E2WMError(f"{path}: not a checkpoint (no {ckpt.STATE}) and no complete checkpoint under it")
    ckpt.read_state(found, "checkpoint")
    return found


def check_out(out, inputs: list[Path], force: bool) -> Path:
    """`out` before any work: absent, empty, or an earlier export (`force`: any folder); never an input
    or a folder holding one, since writing replaces the whole folder."""
    from e2wm.files import output_dir

    out = output_dir(out, "--out", ours=(MARKER,), force=force)
    target = out.resolve()
    for i in inputs:
        src = Path(i).resolve()
        if src == target or src.is_relative_to(target):
            raise E2WMError(f"--out {out}: holds the input {i}; writing would replace it; choose another directory")
    return out


def kl_corpus(folder) -> dict | None:
    """The record of the documents the `kl` regulariser read ({corpus, start, end, corpus_sha256}) that
    an exported folder's marker carries, or None (no marker, or a run with another regulariser)."""
    from e2wm.files import read_json

    f = Path(folder) / MARKER
    if not f.is_file():
        return None
    marker = read_json(f, "export marker")
    rec = marker.get(KL_CORPUS) if isinstance(marker, dict) else None
    if rec is None:
        return None
    types = {"corpus": str, "start": int, "end": int, "corpus_sha256": str}
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), t) for k, t in types.items()):
        raise E2WMError(f"{f}: {KL_CORPUS} is not a record of {', '.join(types)}")
    return rec


@contextmanager
def _writing(out, source, kl=None):
    """A temporary directory beside `out` that replaces `out` once the block completes; its files get
    the user's umask (safetensors writes 0600) and a marker naming `source` (and the `kl` run's documents)."""
    from e2wm.files import settle, write_json

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                settle(f)
        write_json(tmp / MARKER, {"source": str(source), **({KL_CORPUS: kl} if kl else {})})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)   # out is never missing and never half-written
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export(step_path, out, force: bool = False) -> Path:
    """A checkpoint (or a run's newest) -> `out`: a PEFT adapter for LoRA runs, else an HF model."""
    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    check_out(out, [step_path, run_dir], force)
    return export_adapter(step_path, out) if info["lora"] else export_model(step_path, out)


def export_adapter(step_path, out) -> Path:
    """Write adapter_model.safetensors, adapter_config.json and the tokenizer to `out`."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    tensors = ckpt.load_trainable(step_path)
    weights = {k[len("param/"):].replace(".default.", "."): v.contiguous()
               for k, v in tensors.items() if k.startswith("param/")}
    if not weights or any(v.numel() == 0 for v in weights.values()):
        raise E2WMError(f"{step_path}: the checkpoint holds empty LoRA weights")
    lora = info["lora_config"]
    tokenizer = _run_tokenizer(run_dir)
    with _writing(out, step_path, info.get(KL_CORPUS)) as tmp:
        save_file(weights, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        LoraConfig(task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                   target_modules=lora["target_modules"], fan_in_fan_out=lora["fan_in_fan_out"],
                   base_model_name_or_path=info["base_model"]).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return Path(out)


def _run_tokenizer(run_dir: Path):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(run_dir / "tokenizer"))
    except (OSError, ValueError) as e:
        raise E2WMError(f"{run_dir / 'tokenizer'}: cannot load the run's tokenizer "
                        f"({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None


def export_model(step_path, out) -> Path:
    """A full fine-tuning checkpoint -> an HF model directory (fp32 weights, config, tokenizer)."""
    import pickle

    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoConfig, AutoModelForCausalLM

    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    try:
        try:
            state = get_fp32_state_dict_from_zero_checkpoint(str(step_path), tag="ds")
        except (FileNotFoundError, ValueError):  # ZeRO-0 writes the plain module state instead
            state = torch.load(step_path / "ds" / "mp_rank_00_model_states.pt", map_location="cpu",
                               weights_only=False)["module"]
        config = AutoConfig.from_pretrained(str(run_dir / "base_config"))
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise E2WMError(f"{step_path}: unreadable full fine-tuning checkpoint "
                        f"({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise E2WMError(f"{step_path}: checkpoint weights do not fit the model "
                        f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    tokenizer = _run_tokenizer(run_dir)
    with _writing(out, step_path, info.get(KL_CORPUS)) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return Path(out)


def merge(adapter_dir, out, base: str | None = None, force: bool = False) -> Path:
    """Base model + adapter -> one model that `AutoModelForCausalLM.from_pretrained` loads."""
    from peft import PeftModel
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    from e2wm.files import input_dir, read_json
    from e2wm.train.model import check_model_spec, load_model, load_tokenizer

    adapter_dir = input_dir(adapter_dir, "adapter directory (--adapter)")
    cfg_file = adapter_dir / "adapter_config.json"
    try:
        cfg = read_json(cfg_file, "PEFT adapter config")
    except E2WMError as e:
        raise E2WMError(f"--adapter: {e}; not a PEFT adapter directory") from None
    if not isinstance(cfg, dict):
        raise E2WMError(f"--adapter: {cfg_file}: expected a JSON object, not a PEFT adapter config")
    field = "--base" if base else f"{cfg_file}: base_model_name_or_path"
    base = base or cfg.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise E2WMError(f"{cfg_file}: names no base model; pass --base")
    check_model_spec(base, field)
    check_out(out, [adapter_dir], force)
    kl = kl_corpus(adapter_dir)   # a merged model read what its adapter read
    try:
        merged = PeftModel.from_pretrained(load_model(base, field=field), str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise E2WMError(f"--adapter {adapter_dir}: does not load onto {base} "
                        f"({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None
    if (adapter_dir / "tokenizer_config.json").is_file():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
        except (OSError, ValueError) as e:
            raise E2WMError(f"--adapter {adapter_dir}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None
    else:
        tokenizer = load_tokenizer(base, field=field)
    with _writing(out, adapter_dir, kl) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return Path(out)
