"""Artefacts are checked before they are trusted (issue 21): a run's run.json, a checkpoint's LoRA tensors
and trainer state, an exported adapter and a Fisher's metadata. Bad ones are one line naming the file and
the field or flag, exit 2, and leave the workspace byte-identical; good ones still export and merge."""
import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from e2wm.cli import main
from e2wm.train.config import load_train_config
from e2wm.train.data import read_rows
from e2wm.train.fisher_io import save_fisher
from e2wm.train.model import add_lora, byte_tokenizer, tiny_causal_lm

ROWS = [{"task": "t", "input": f"question {i}?", "ref": f"answer {i}"} for i in range(8)]
LORA = {"r": 8, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "fan_in_fan_out": False}
Q0 = "base_model.model.model.layers.0.self_attn.q_proj"
V1 = "base_model.model.model.layers.1.self_attn.v_proj"
MODULES = {"q0": Q0, "v1": V1}


def _lora_weights() -> dict[str, torch.Tensor]:
    """The tiny model's LoRA weights as peft saves them (adapter name dropped), B made non-zero."""
    g = torch.Generator().manual_seed(0)
    model = add_lora(tiny_causal_lm())
    return {n.replace(".default.", "."): torch.randn(p.shape, generator=g)
            for n, p in model.named_parameters() if p.requires_grad}


def _checkpoint(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """trainable.safetensors of these weights: fp32 weights and zero AdamW moments, named as training names them."""
    out = {}
    for k, v in weights.items():
        name = k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
        out[f"param/{name}"] = v
        out.update({f"{m}/{name}": torch.zeros_like(v) for m in ("exp_avg", "exp_avg_sq")})
    return out


def _run(root: Path, base: str, *, info=None, state=None, step: int = 1, weights=None, tokenizer=False) -> Path:
    """A run folder as `e2wm train` writes it, with one checkpoint; `info`/`state` replace run.json's and
    trainer_state.json's fields."""
    d = root / "checkpoints" / f"step-{step:08d}"
    d.mkdir(parents=True)
    st = {"step": step, "epoch": 0, "world_size": 1, "optimizer_steps": step, "trajectory": "x",
          "data_sha256": "x", "lora": True, **(state or {})}
    (d / "trainer_state.json").write_text(json.dumps(st))
    save_file(_checkpoint(_lora_weights() if weights is None else weights), str(d / "trainable.safetensors"))
    run_info = {"base_model": base, "lora": True, "lora_config": dict(LORA), "tasks": {"t": 8}, **(info or {})}
    (root / "run.json").write_text(json.dumps(run_info))
    if tokenizer:
        byte_tokenizer().save_pretrained(str(root / "tokenizer"))
    return root


def _adapter(root: Path, base: str, weights=None, config=None) -> Path:
    """A PEFT adapter folder of the tiny model's q/v LoRA; `config` replaces adapter_config.json's fields."""
    root.mkdir()
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 32, "lora_dropout": 0.0,
           "target_modules": ["q_proj", "v_proj"], "fan_in_fan_out": False, "bias": "none",
           "base_model_name_or_path": base, **(config or {})}
    (root / "adapter_config.json").write_text(json.dumps(cfg))
    if weights is not False:
        save_file(_lora_weights() if weights is None else weights, str(root / "adapter_model.safetensors"))
    return root


def _without(weights: dict, *drop: str) -> dict:
    return {k: v for k, v in weights.items() if not any(k.startswith(d) for d in drop)}


def _with(weights: dict, **changes) -> dict:
    """`weights` with entries replaced: keyword `q0_A` means Q0's lora_A.weight."""
    out = dict(weights)
    for short, v in changes.items():
        module, ab = short.rsplit("_", 1)
        out[f"{MODULES[module]}.lora_{ab}.weight"] = v
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    w = tmp_path_factory.mktemp("artefacts")
    base = str(tiny_model_dir)
    good = _lora_weights()
    (w / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = {"out": str(w / "run"), "model": {"name_or_path": base},
           "data": {"path": str(w / "data.jsonl"), "max_length": 64}, "regularizer": {"kind": "none"},
           "optim": {"precision": "fp32", "max_steps": 1, "global_batch_size": 4, "micro_batch_size": 2},
           "checkpoint": {"every": 0}, "logging": {"tensorboard": False}}
    (w / "good.yaml").write_text(yaml.safe_dump(cfg))
    suite_row = {"input": "Is it?", "answer_list": ["yes", "no"], "answer": "yes"}
    (w / "suite.jsonl").write_text(json.dumps(suite_row) + "\n")

    # ---- run.json fields an export copies into adapter_config.json
    for name, info in {"r-str": {"r": "8"}, "r-bool": {"r": True}, "r-zero": {"r": 0}, "r-float": {"r": 8.5},
                       "alpha-neg": {"alpha": -1}, "alpha-str": {"alpha": "32"}, "dropout-one": {"dropout": 1.0},
                       "dropout-str": {"dropout": "0.1"}, "targets-empty": {"target_modules": []},
                       "targets-int": {"target_modules": [1]}, "fifo-str": {"fan_in_fan_out": "no"}}.items():
        _run(w / f"info-{name}", base, info={"lora_config": {**LORA, **info}})
    _run(w / "info-base-int", base, info={"base_model": 5})
    _run(w / "info-lora-str", base, info={"lora": "yes"})
    _run(w / "info-noconfig", base, info={"lora_config": None})
    _run(w / "info-kl", base, info={"kl_corpus": {"corpus": "c", "start": 5, "end": 2, "corpus_sha256": "x"}})
    # ---- checkpoint tensors
    _run(w / "ckpt-nolora", base, weights={"base_model.model.lm_head.weight": torch.ones(4, 4)})
    _run(w / "ckpt-unpaired", base, weights=_without(good, f"{Q0}.lora_B"))
    _run(w / "ckpt-nan", base, weights=_with(good, v1_B=torch.full((32, 8), float("nan"))))
    _run(w / "ckpt-rank", base, weights=_with(good, q0_B=torch.ones(32, 4)))
    _run(w / "ckpt-r", base, info={"lora_config": {**LORA, "r": 4}})
    _run(w / "ckpt-good", base, tokenizer=True)
    # ---- trainer state against its folder and the run
    _run(w / "state-other-step", base, state={"step": 5})
    _run(w / "state-neg", base, state={"step": -1})
    _run(w / "state-str", base, state={"step": "1"})
    _run(w / "state-bool", base, state={"step": True})
    _run(w / "state-lora-str", base, state={"lora": "yes"})
    tc = load_train_config(str(w / "good.yaml"))
    data_hash = hashlib.sha256(json.dumps(read_rows(str(w / "data.jsonl")), sort_keys=True).encode()).hexdigest()
    _run(w / "state-beyond", base, step=9, state={"trajectory": tc.trajectory_hash(), "data_sha256": data_hash})
    # ---- exported adapters
    _adapter(w / "adapter-good", base)
    _adapter(w / "adapter-nolora", base, weights={"base_model.model.lm_head.weight": torch.ones(4, 4)})
    _adapter(w / "adapter-nothing", base, weights={})
    _adapter(w / "adapter-unpaired", base, weights=_without(good, f"{Q0}.lora_B"))
    _adapter(w / "adapter-nan", base, weights=_with(good, q0_A=torch.full((8, 32), float("nan"))))
    _adapter(w / "adapter-inf", base, weights=_with(good, v1_B=torch.full((32, 8), float("inf"))))
    _adapter(w / "adapter-int", base, weights=_with(good, q0_A=torch.ones(8, 32, dtype=torch.int64)))
    _adapter(w / "adapter-rank", base, weights=_with(good, q0_B=torch.ones(32, 4)))
    _adapter(w / "adapter-1d", base, weights=_with(good, q0_A=torch.ones(8)))
    _adapter(w / "adapter-r", base, config={"r": 4})
    _adapter(w / "adapter-r-bool", base, config={"r": True})
    _adapter(w / "adapter-ia3", base, config={"peft_type": "IA3"})
    _adapter(w / "adapter-noweights", base, weights=False)
    _adapter(w / "adapter-missing", base, weights=_without(good, V1))
    _adapter(w / "adapter-extra", base, weights={**good, **{k.replace("layers.1.", "layers.7."): v.clone()
                                                            for k, v in good.items() if "layers.1." in k}})
    _adapter(w / "adapter-bin-nan", base, weights=False)   # older peft's pickle: checked alike
    torch.save(_with(good, v1_A=torch.full((8, 32), float("nan"))), w / "adapter-bin-nan" / "adapter_model.bin")
    _adapter(w / "adapter-truncated", base)
    f = w / "adapter-truncated" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    # ---- Fisher metadata
    for name, meta in {"samples-neg": {"samples": "-3"}, "samples-zero": {"samples": "0"},
                       "samples-frac": {"samples": "2.5"}, "samples-nan": {"samples": "nan"},
                       "tokens-neg": {"tokens": "-1"}, "maxlen-inf": {"max_length": "inf"},
                       "world-zero": {"world_size": "0"}, "stage": {"zero_stage": "7"},
                       "sums-neg": {"weight_sums": json.dumps({"x": -1.0})}}.items():
        save_fisher(w / f"fisher-{name}", {"x": torch.ones(2)}, {"model": "tiny", **meta})
    return w


def T(*sets, resume=None):
    argv = ["train", "--config", "WS/good.yaml"] + (["--resume", resume] if resume else [])
    for s in sets:
        argv += ["--set", s]
    return argv


def EWC(name):
    return T("regularizer.kind=ewc_lora", f"regularizer.fisher=WS/fisher-{name}")


def M(adapter):
    return ["merge", "--adapter", f"WS/{adapter}", "--out", "WS/x"]


def E(adapter, *extra):
    return ["eval", "--model", "BASE", "--adapter", f"WS/{adapter}", "--suites", "WS/suite.jsonl",
            "--out", "WS/x", *extra]


STEP = "checkpoints/step-00000001"
CASES = [
    # ---- run.json: each field an export copies, type-checked
    (["export", "WS/info-r-str", "--out", "WS/x"], ["run.json", "lora_config.r", '"8"']),
    (["export", "WS/info-r-bool", "--out", "WS/x"], ["run.json", "lora_config.r", "true"]),
    (["export", "WS/info-r-zero", "--out", "WS/x"], ["run.json", "lora_config.r", "positive integer"]),
    (["export", "WS/info-r-float", "--out", "WS/x"], ["run.json", "lora_config.r"]),
    (["export", "WS/info-alpha-neg", "--out", "WS/x"], ["run.json", "lora_config.alpha"]),
    (["export", "WS/info-alpha-str", "--out", "WS/x"], ["run.json", "lora_config.alpha"]),
    (["export", "WS/info-dropout-one", "--out", "WS/x"], ["run.json", "lora_config.dropout", "[0, 1)"]),
    (["export", "WS/info-dropout-str", "--out", "WS/x"], ["run.json", "lora_config.dropout"]),
    (["export", "WS/info-targets-empty", "--out", "WS/x"], ["run.json", "lora_config.target_modules"]),
    (["export", "WS/info-targets-int", "--out", "WS/x"], ["run.json", "lora_config.target_modules"]),
    (["export", "WS/info-fifo-str", "--out", "WS/x"], ["run.json", "lora_config.fan_in_fan_out"]),
    (["export", "WS/info-base-int", "--out", "WS/x"], ["run.json", "base_model"]),
    (["export", "WS/info-lora-str", "--out", "WS/x"], ["run.json", "lora", '"yes"']),
    (["export", "WS/info-noconfig", "--out", "WS/x"], ["run.json", "lora_config"]),
    (["export", "WS/info-kl", "--out", "WS/x"], ["run.json", "kl_corpus"]),
    # ---- checkpoint tensors: LoRA pairs, finite, ranks
    (["export", "WS/ckpt-nolora", "--out", "WS/x"], ["ckpt-nolora", "trainable.safetensors", "no LoRA weights"]),
    (["export", "WS/ckpt-unpaired", "--out", "WS/x"], ["trainable.safetensors", f"{Q0}.lora_A.weight", "lora_B"]),
    (["export", "WS/ckpt-nan", "--out", "WS/x"], ["ckpt-nan", "trainable.safetensors", "not finite"]),
    (["export", "WS/ckpt-rank", "--out", "WS/x"], ["trainable.safetensors", f"{Q0}.lora_B.weight", "rank 4"]),
    (["export", "WS/ckpt-r", "--out", "WS/x"], ["trainable.safetensors", "rank 8", "r is 4"]),
    # ---- trainer state: its step against its folder and the run
    (T(resume=f"WS/state-other-step/{STEP}"), ["--resume", "trainer_state.json", "step 5", "step 1"]),
    (T(f"checkpoint.resume=WS/state-other-step/{STEP}"), ["checkpoint.resume", "trainer_state.json", "step 5"]),
    (["export", "WS/state-other-step", "--out", "WS/x"], ["checkpoint", "trainer_state.json", "step 5"]),
    (T(resume=f"WS/state-neg/{STEP}"), ["--resume", "trainer_state.json", "negative"]),
    (T(resume=f"WS/state-str/{STEP}"), ["--resume", "trainer_state.json", "step is not int"]),
    (T(resume=f"WS/state-bool/{STEP}"), ["--resume", "trainer_state.json", "step is not int"]),
    (T(resume=f"WS/state-lora-str/{STEP}"), ["--resume", "trainer_state.json", "lora is not bool"]),
    (T(resume="WS/state-beyond/checkpoints/step-00000009"),                       # loads the tokenizer
     ["--resume", "step-00000009/trainer_state.json", "step 9", "beyond this run's 1 steps"]),
    # ---- adapters: merge checks them before the base model loads, then against its modules
    (M("adapter-nolora"), ["--adapter", "adapter-nolora", "adapter_model.safetensors", "no LoRA weights"]),
    (M("adapter-nothing"), ["--adapter", "adapter-nothing", "no LoRA weights"]),
    (M("adapter-unpaired"), ["--adapter", "adapter_model.safetensors", f"{Q0}.lora_A.weight", "lora_B"]),
    (M("adapter-nan"), ["--adapter", "adapter-nan", f"{Q0}.lora_A.weight", "not finite"]),
    (M("adapter-inf"), ["--adapter", "adapter-inf", f"{V1}.lora_B.weight", "not finite"]),
    (M("adapter-int"), ["--adapter", "adapter-int", "not finite floating-point"]),
    (M("adapter-rank"), ["--adapter", "adapter-rank", "rank 8", "rank 4"]),
    (M("adapter-1d"), ["--adapter", "adapter-1d", "not LoRA factors"]),
    (M("adapter-r"), ["--adapter", "adapter-r", "r is 4"]),
    (M("adapter-r-bool"), ["--adapter", "adapter-r-bool", "adapter_config.json", "r is True"]),
    (M("adapter-ia3"), ["--adapter", "adapter-ia3", "peft_type", "IA3"]),
    (M("adapter-noweights"), ["--adapter", "adapter-noweights", "adapter_model.safetensors"]),
    (M("adapter-bin-nan"), ["--adapter", "adapter-bin-nan", "adapter_model.bin", f"{V1}.lora_A.weight", "not finite"]),
    (M("adapter-truncated"), ["--adapter", "adapter-truncated", "adapter_model.safetensors", "unreadable"]),
    (M("adapter-missing"), ["--adapter", "adapter-missing", "2 missing", "layers.1.self_attn.v_proj"]),   # loads tiny
    (M("adapter-extra"), ["--adapter", "adapter-extra", "lacks", "layers.7"]),                          # loads tiny
    # ---- eval --adapter: the same checks
    (E("adapter-nolora"), ["--adapter", "adapter-nolora", "no LoRA weights"]),
    (E("adapter-unpaired"), ["--adapter", "adapter-unpaired", "lora_B"]),
    (E("adapter-nan"), ["--adapter", "adapter-nan", "not finite"]),
    (E("adapter-rank"), ["--adapter", "adapter-rank", "rank 4"]),
    (E("adapter-truncated"), ["--adapter", "adapter-truncated", "unreadable"]),
    (E("adapter-missing"), ["--adapter", "adapter-missing", "missing"]),
    (E("adapter-extra"), ["--adapter", "adapter-extra", "layers.7"]),
    # ---- Fisher metadata
    (EWC("samples-neg"), ["regularizer.fisher", "fisher-samples-neg", "samples", "'-3'"]),
    (EWC("samples-zero"), ["regularizer.fisher", "fisher-samples-zero", "samples", "'0'"]),
    (EWC("samples-frac"), ["regularizer.fisher", "samples", "'2.5'"]),
    (EWC("samples-nan"), ["regularizer.fisher", "samples", "'nan'"]),
    (EWC("tokens-neg"), ["regularizer.fisher", "fisher-tokens-neg", "tokens"]),
    (EWC("maxlen-inf"), ["regularizer.fisher", "max_length", "'inf'"]),
    (EWC("world-zero"), ["regularizer.fisher", "world_size"]),
    (EWC("stage"), ["regularizer.fisher", "zero_stage", "'7'"]),
    (EWC("sums-neg"), ["regularizer.fisher", "weight_sums"]),
    (E("adapter-good", "--ppl-corpus", "builtin:pydoc", "--fisher", "WS/fisher-samples-neg"),
     ["--fisher", "fisher-samples-neg", "samples"]),
]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, names", CASES, ids=[f"{i:03d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_artefact_is_one_line(ws, tiny_model_dir, cli_error, argv, names):
    before = _snapshot(ws)
    cli_error([a.replace("WS/", f"{ws}/").replace("BASE", str(tiny_model_dir)) for a in argv], names)
    after = _snapshot(ws)
    assert after.keys() == before.keys(), f"wrote {set(after) - set(before)}, removed {set(before) - set(after)}"
    assert [k for k in before if before[k] != after[k]] == []


def test_cases_are_many_and_distinct():
    assert len({tuple(a) for a, _ in CASES}) == len(CASES) >= 20


def test_good_artefacts_still_export_merge_and_evaluate(ws, tiny_model_dir, tmp_path):
    """The checks refuse only bad artefacts: a well-formed checkpoint exports, and its adapter merges and
    evaluates onto the base model, its LoRA weights intact."""
    assert main(["export", str(ws / "ckpt-good"), "--out", str(tmp_path / "adapter")]) == 0
    exported = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert exported.keys() == _lora_weights().keys()
    assert all(torch.equal(exported[k], v) for k, v in _lora_weights().items())
    assert main(["merge", "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    assert main(["merge", "--adapter", str(ws / "adapter-good"), "--out", str(tmp_path / "merged2")]) == 0
    assert main(["eval", "--model", str(tiny_model_dir), "--adapter", str(ws / "adapter-good"), "--suites",
                 str(ws / "suite.jsonl"), "--out", str(tmp_path / "eval")]) == 0
    a = load_file(str(tmp_path / "merged" / "model.safetensors"))
    b = load_file(str(tiny_model_dir / "model.safetensors"))
    changed = {k for k in b if k in a and not torch.equal(a[k], b[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)   # the adapter is in the merge
