"""Tiny deterministic causal LMs and LoRA helpers (no downloads; used by tests and the quickstart)."""
from __future__ import annotations

import torch


def tiny_causal_lm(seed: int = 0, vocab: int = 128, hidden: int = 32, layers: int = 2, heads: int = 4):
    """A small fp32 LlamaForCausalLM built from a config; same seed -> identical weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=512, tie_word_embeddings=False,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)  # HF init draws from the global RNG, so seeding here makes it deterministic
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.eval()  # no dropout: gradients must be reproducible across ranks and runs
    return model


def add_lora(model, r: int = 8, alpha: int = 32, targets=("q_proj", "v_proj"), dropout: float = 0.0):
    """Wrap `model` with a peft LoRA adapter for causal LM; returns the PeftModel."""
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha,
                     target_modules=list(targets), lora_dropout=dropout)
    return get_peft_model(model, cfg)


def _base_name(peft_name: str) -> str:
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
            base = _base_name(f"{mod_name}.weight")
            out.append((base, mod.lora_A[adapter].weight, mod.lora_B[adapter].weight,
                        float(mod.scaling[adapter])))
    return sorted(out, key=lambda t: t[0])


def base_weight_names(peft_model, modules="lora-targets") -> list[str]:
    """Base-model names of the weights a Fisher covers: LoRA-targeted weights, or "all" base params."""
    if modules == "lora-targets":
        return sorted({t[0] for t in lora_pairs(peft_model)})
    if modules == "all":
        return sorted(_base_name(n) for n, _ in peft_model.named_parameters() if "lora_" not in n)
    raise ValueError(f"modules must be 'lora-targets' or 'all', got {modules!r}")
