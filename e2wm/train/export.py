"""`e2wm export` and `e2wm merge`: checkpoints -> a PEFT adapter directory or a whole HF model.

The adapter comes from the checkpoint's consolidated fp32 LoRA weights, so it is complete whatever
the ZeRO stage that trained it (no empty `torch.Size([0])` tensors). `RUN/run.json` (written when
training starts) says which base model, LoRA settings and tokenizer it belongs to. The exported folder's
marker carries which general-text documents a `kl` run read (and a merge keeps it), so that evaluation,
given only the folder, can keep its perplexity documents apart from them.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.train import checkpoint as ckpt
from e2wm.train.adapters import check_adapter, check_pairs, load_onto

RUN_INFO = "run.json"
MARKER = "e2wm-export.json"   # marks a folder this module wrote, so a later export may replace it
KL_CORPUS = "kl_corpus"       # run.json's and the marker's record of the kl regulariser's documents


def _run_info(step_path: Path) -> tuple[Path, dict]:
    """(run directory, its run.json) of a step directory, each field an export copies type-checked: a
    wrong type would otherwise land in adapter_config.json and fail only when the adapter is used."""
    from e2wm.files import read_object

    run_dir = step_path.parent.parent
    f = run_dir / RUN_INFO
    info = read_object(f, "run description", after=f"; is {step_path} a step directory of an `e2wm train` run?")
    checks = [("base_model", info, lambda v: isinstance(v, str) and v.strip() != "", "a model name or path"),
              ("lora", info, lambda v: isinstance(v, bool), "true or false")]
    if info.get("lora") is True:
        lora = info.get("lora_config") if isinstance(info.get("lora_config"), dict) else {}
        checks += [
            ("lora_config", info, lambda v: isinstance(v, dict), "an object"),
            ("lora_config.r", lora, lambda v: _number(v) and isinstance(v, int) and v > 0, "a positive integer"),
            ("lora_config.alpha", lora, lambda v: _number(v) and v > 0, "a positive number"),
            ("lora_config.dropout", lora, lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
            ("lora_config.target_modules", lora,
             lambda v: isinstance(v, str) and v.strip() != "" or isinstance(v, list) and v != []
             and all(isinstance(m, str) and m.strip() != "" for m in v), "a non-empty list of module names"),
            ("lora_config.fan_in_fan_out", lora, lambda v: isinstance(v, bool), "true or false")]
    if KL_CORPUS in info:
        checks += [(KL_CORPUS, info, _is_kl_record, f"a record of {', '.join(_KL_TYPES)} (0 <= start < end)")]
    for name, where, ok, expected in checks:
        value = where.get(name.rsplit(".", 1)[-1], _MISSING)
        if value is _MISSING or not ok(value):
            shown = "missing" if value is _MISSING else f"{json.dumps(value)[:60]}"
            raise E2WMError(f"{f}: {name} is {shown}, expected {expected}; not the run description `e2wm train` "
                            f"writes")
    return run_dir, info


_MISSING = object()
_KL_TYPES = {"corpus": str, "start": int, "end": int, "corpus_sha256": str}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_kl_record(rec) -> bool:
    return (isinstance(rec, dict) and all(isinstance(rec.get(k), t) and not isinstance(rec.get(k), bool)
                                          for k, t in _KL_TYPES.items()) and 0 <= rec["start"] < rec["end"])


def resolve_step(path) -> Path:
    """A step directory, or the newest one of a run directory (checked: a readable e2wm checkpoint)."""
    from e2wm.files import input_dir

    p = input_dir(path, "checkpoint (a step or run directory)")
    found = p if (p / ckpt.STATE).exists() else ckpt.latest(p)
    if found is None:
        raise E2WMError(f"{path}: not a checkpoint (no {ckpt.STATE}) and no complete checkpoint under it")
    ckpt.read_state(found, "checkpoint")
    return found


def check_out(out, inputs, force: bool) -> Path:
    """`out` before any work: absent, empty, or an earlier export (`force`: any folder); never one that
    is, holds or lies inside an input ({flag: path}; `e2wm.files.apart`), since writing replaces the folder."""
    from e2wm.files import output_dir

    return output_dir(out, "--out", ours=(MARKER,), force=force, inputs=inputs)


def _run_inputs(step_path: Path, run_dir: Path) -> dict:
    """What an export reads: the step folder and the run's description, tokenizer and base config (the
    run folder itself may hold the export: training writes RUN/adapter)."""
    return {"checkpoint": step_path, "run.json": run_dir / RUN_INFO, "tokenizer": run_dir / "tokenizer",
            "base_config": run_dir / "base_config"}


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
    if not _is_kl_record(rec):
        raise E2WMError(f"{f}: {KL_CORPUS} is not a record of {', '.join(_KL_TYPES)} (0 <= start < end)")
    return rec


@contextmanager
def _writing(out, source, kl=None):
    """`atomic_dir(out)`, plus a marker naming `source` (and the `kl` run's documents)."""
    from e2wm.files import atomic_dir, write_json

    with atomic_dir(out) as tmp:
        yield tmp
        write_json(tmp / MARKER, {"source": str(source), **({KL_CORPUS: kl} if kl else {})})


def export(step_path, out, force: bool = False) -> Path:
    """A checkpoint (or a run's newest) -> `out`: a PEFT adapter for LoRA runs, else an HF model."""
    step_path = resolve_step(step_path)
    run_dir, info = _run_info(step_path)
    check_out(out, _run_inputs(step_path, run_dir), force)
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
    if any(v.numel() == 0 for v in weights.values()):
        raise E2WMError(f"{step_path}: the checkpoint holds empty LoRA weights")
    lora = info["lora_config"]
    check_pairs({k: tuple(v.shape) for k, v in weights.items()}, lora["r"], str(step_path / ckpt.TRAINABLE))
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
        if any((step_path / "ds").glob("*zero_pp_rank_*")):   # ZeRO-1/2/3: partitioned fp32 state
            state = get_fp32_state_dict_from_zero_checkpoint(str(step_path), tag="ds")
        else:   # ZeRO-0 writes the plain module state
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
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    from e2wm.train.adapters import read_config
    from e2wm.train.model import check_model_spec, load_model, load_tokenizer

    adapter_dir, cfg = read_config(adapter_dir)
    cfg_file = adapter_dir / "adapter_config.json"
    field = "--base" if base else f"{cfg_file}: base_model_name_or_path"
    base = base or cfg.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise E2WMError(f"{cfg_file}: names no base model; pass --base")
    check_model_spec(base, field)
    check_out(out, {"--adapter": adapter_dir, field: base}, force)
    shapes = check_adapter(adapter_dir, cfg)   # before the base model loads
    kl = kl_corpus(adapter_dir)   # a merged model read what its adapter read
    try:
        merged = load_onto(load_model(base, field=field), adapter_dir, shapes,
                           f"--adapter {adapter_dir} on {base}").merge_and_unload()
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
