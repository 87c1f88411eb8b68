"""Models and tokenizers: `tiny`, `shape:NAME` (random weights in a known model's shape), a path or hub id.

`tiny` is a small Llama built from a config with a byte-level tokenizer (no download), for tests and
the quickstart. `shape:gpt-neo-1.3b` (and `gpt-j-6b`, `llama-13b`) builds that architecture with
random weights, for benchmarks and memory checks without a download. LoRA targets default per
architecture (E2WM used peft's defaults: q_proj/v_proj).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from e2wm.errors import E2WMError

TINY = "tiny"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}   # precision names

# peft-style defaults per `config.model_type`
LORA_TARGETS = {
    "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "qwen2": ("q_proj", "v_proj"),
    "opt": ("q_proj", "v_proj"), "gptj": ("q_proj", "v_proj"), "gpt_neo": ("q_proj", "v_proj"),
    "gpt_neox": ("query_key_value",), "gpt2": ("c_attn",),
}

SHAPES = {  # public config values of the models E2WM fine-tuned
    "gpt-neo-1.3b": ("GPTNeoConfig", dict(vocab_size=50257, hidden_size=2048, num_layers=24, num_heads=16,
                                          max_position_embeddings=2048, window_size=256,
                                          attention_types=[[["global", "local"], 12]])),
    "gpt-j-6b": ("GPTJConfig", dict(vocab_size=50400, n_embd=4096, n_layer=28, n_head=16, rotary_dim=64,
                                    n_positions=2048)),
    "llama-13b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824,
                                      num_hidden_layers=40, num_attention_heads=40, max_position_embeddings=2048)),
}


def byte_tokenizer():
    """A byte-level tokenizer (every UTF-8 byte one token, plus <pad> <s> </s>); 259 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(("<pad>", "<s>", "</s>"))}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def tiny_config(vocab: int = 259, hidden: int = 32, layers: int = 2, heads: int = 4):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=2048, tie_word_embeddings=False,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)


def tiny_causal_lm(seed: int = 0, vocab: int = 259, hidden: int = 32, layers: int = 2, heads: int = 4):
    """A small fp32 LlamaForCausalLM built from a config; same seed -> identical weights."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)  # HF init draws from the global RNG, so seeding here makes it deterministic
    model = LlamaForCausalLM(tiny_config(vocab, hidden, layers, heads)).to(torch.float32)
    model.eval()  # no dropout: gradients must be reproducible across ranks and runs
    return model


def _is_local(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).exists()


def is_hub_id(spec: str) -> bool:
    """`spec` names a hub model (fetched, or read from the cache): neither a builtin nor a local path."""
    return spec != TINY and not spec.startswith("shape:") and not _is_local(spec)


def _from_pretrained(load, spec: str, field: str = "model.name_or_path", **kw):
    """`load(local path or hub id, **kw)`; a spec it cannot load is one E2WMError line naming `field`."""
    from safetensors import SafetensorError
    try:
        return load(str(Path(spec).expanduser()) if _is_local(spec) else spec, **kw)
    except (OSError, ValueError, SafetensorError) as e:   # missing, corrupt or foreign model files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise E2WMError(f"{field}: cannot load {spec!r} ({first})") from None


def check_model_spec(spec: str, field: str = "model.name_or_path") -> None:
    """Cheap check before heavy work: builtin names exist, local paths are model directories."""
    if not spec.strip():
        raise E2WMError(f"{field}: no model given")
    if spec == TINY:
        return
    if spec.startswith("shape:"):
        if spec[6:] not in SHAPES:
            raise E2WMError(f"{field}: unknown shape {spec[6:]!r}; known: {', '.join(SHAPES)}")
        return
    if _is_local(spec) and not Path(spec).expanduser().is_dir():
        raise E2WMError(f"{field}: {spec}: no such model directory")
    if _is_local(spec) and not (Path(spec).expanduser() / "config.json").is_file():
        raise E2WMError(f"{field}: {spec}: not a model directory (no config.json)")


def load_tokenizer(spec: str, trust_remote_code: bool = False, field: str = "model.name_or_path"):
    """The tokenizer of `spec`, with a pad token (EOS when it has none) and right padding."""
    if spec == TINY or spec.startswith("shape:"):
        tok = byte_tokenizer()
    else:
        from transformers import AutoTokenizer
        tok = _from_pretrained(AutoTokenizer.from_pretrained, spec, field, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # pads are masked out of attention and loss, so any id will do
    tok.padding_side = "right"
    return tok


def model_config(spec: str, trust_remote_code: bool = False, field: str = "model.name_or_path"):
    """The architecture of `spec` without its weights (cheap)."""
    if spec == TINY:
        return tiny_config()
    import transformers
    if spec.startswith("shape:"):
        cls_name, kw = SHAPES[spec[6:]]
        return getattr(transformers, cls_name)(**kw)
    return _from_pretrained(transformers.AutoConfig.from_pretrained, spec, field,
                            trust_remote_code=trust_remote_code)


def max_positions(model) -> int | None:
    """The positions the model holds (prompt and new tokens together), None where its config names none."""
    c = model.config
    return getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)


def load_model(spec: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               field: str = "model.name_or_path", device_map: dict | str | None = None,
               max_memory: dict | None = None):
    """A causal LM. Under ZeRO-3 keep a `HfDeepSpeedConfig` alive before calling: the weights are
    then partitioned as they load (`from_pretrained` / `from_config`), so no rank holds the whole model.
    `device_map` ({"": device}, or "auto" within `max_memory`): where the weights go as they load (a
    builtin model is built in host memory, then moved or dispatched there)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # one bar per rank per load is noise in a launcher's log
    if spec == TINY or spec.startswith("shape:"):
        model = (tiny_causal_lm().to(dtype) if spec == TINY
                 else AutoModelForCausalLM.from_config(model_config(spec), dtype=dtype))
        return model if device_map is None else _placed(model, device_map, max_memory)
    placing = {} if device_map is None else {"device_map": device_map, "max_memory": max_memory}
    # transformers would log a many-line report and raise a RuntimeError that points at it for weights of
    # another shape, and only log weights it initialised at random: hold the report, loading every weight
    # it can, and refuse either case in one line; a good load logs the report as before
    report = hf_logging.get_logger("transformers.modeling_utils")
    held = _HeldReport()
    report.addFilter(held)
    try:
        model, info = _from_pretrained(AutoModelForCausalLM.from_pretrained, spec, field, dtype=dtype,
                                       trust_remote_code=trust_remote_code, output_loading_info=True,
                                       ignore_mismatched_sizes=True, **placing)
    finally:
        report.removeFilter(held)
    _check_loaded(model, info, spec, field)
    for record in held.records:   # only unexpected weights left: transformers' own word on them
        report.handle(record)
    return model


def _placed(model, device_map: dict | str, max_memory: dict | None):
    if device_map != "auto":
        return model.to(device_map[""])
    from accelerate import dispatch_model, infer_auto_device_map
    return dispatch_model(model, infer_auto_device_map(model, max_memory,
                                                      no_split_module_classes=model._no_split_modules))


class _HeldReport(logging.Filter):
    """Keeps back the records of transformers' weight-loading report."""

    def __init__(self):
        super().__init__()
        self.records = []

    def filter(self, record) -> bool:
        if record.funcName == "log_state_dict_report":
            self.records.append(record)
            return False
        return True


def _check_loaded(model, info: dict, spec: str, field: str) -> None:
    """Refuse a model whose config.json does not describe its weights: a weight of another shape, or one the
    checkpoint lacks (transformers would initialise both at random; tied weights are not missing)."""
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    embeddings = {names.get(id(getattr(m, "weight", None)))
                  for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda m: (m[0] not in embeddings, m[0]))
    if mismatched:
        key, in_file, by_config = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        vocab = getattr(model.config, "vocab_size", None)
        if key in embeddings and by_config[0] == vocab and in_file[0] != vocab:
            keys = ", ".join(m[0] for m in mismatched if m[0] in embeddings)
            raise E2WMError(f"{field}: {spec}: config.json says vocab_size {vocab} but the weights have "
                            f"{in_file[0]} rows ({keys})")
        raise E2WMError(f"{field}: {spec}: config.json does not match the weights: {key} is {list(in_file)} in "
                        f"the weights but {list(by_config)} by config.json{more}")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise E2WMError(f"{field}: {spec}: the weights lack {missing[0]}{more}, which config.json's model has "
                        f"(transformers would start them random)")


def default_targets(model) -> tuple[str, ...]:
    kind = model.config.model_type
    if kind not in LORA_TARGETS:
        raise E2WMError(f"lora.target_modules: no default for model type {kind!r}; name the modules "
                        f"(known defaults: {', '.join(sorted(LORA_TARGETS))})")
    return LORA_TARGETS[kind]


def add_lora(model, r: int = 8, alpha: int = 32, targets=None, dropout: float = 0.0, seed: int = 0,
             field: str = "lora.target_modules"):
    """Wrap `model` with a peft LoRA adapter for causal LM (A drawn from `seed`); returns the PeftModel."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(targets or default_targets(model))
    cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, target_modules=targets,
                     lora_dropout=dropout, fan_in_fan_out=model.config.model_type == "gpt2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, cfg)
        except ValueError as e:  # peft: "Target modules {...} not found in the base model"
            raise E2WMError(f"{field}: {str(e).splitlines()[0]}") from None


def base_name(peft_name: str) -> str:
    """Map a PeftModel parameter name back to the base model's naming."""
    name = peft_name
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace(".base_layer.", ".")


def lora_pairs(peft_model) -> list[tuple[str, torch.nn.Parameter, torch.nn.Parameter, float]]:
    """(base weight name, lora_A weight, lora_B weight, scaling) for every LoRA-wrapped linear, sorted by name."""
    from peft.tuners.lora import LoraLayer

    out = []
    for mod_name, mod in peft_model.named_modules():
        if not isinstance(mod, LoraLayer):
            continue
        for adapter in mod.lora_A:  # usually just "default"
            base = base_name(f"{mod_name}.weight")
            out.append((base, mod.lora_A[adapter].weight, mod.lora_B[adapter].weight,
                        float(mod.scaling[adapter])))
    return sorted(out, key=lambda t: t[0])


def fan_in_fan_out(peft_model) -> bool:
    """True when the LoRA-wrapped weights are stored (in, out) (GPT-2's Conv1D), so ΔW = (B·A)ᵀ."""
    cfg = getattr(peft_model, "peft_config", {}).get("default")
    return bool(getattr(cfg, "fan_in_fan_out", False))


def base_weight_names(peft_model, modules="lora-targets") -> list[str]:
    """Base-model names of the weights a Fisher covers: LoRA-targeted weights, or "all" base params."""
    if modules == "lora-targets":
        return sorted({t[0] for t in lora_pairs(peft_model)})
    if modules == "all":
        return sorted(base_name(n) for n, _ in peft_model.named_parameters() if "lora_" not in n)
    raise E2WMError(f"modules must be 'lora-targets' or 'all', got {modules!r}")
