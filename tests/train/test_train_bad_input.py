"""Bad input to `e2wm train`, `e2wm fisher`, `e2wm export` and `e2wm merge`: one line naming the culprit,
exit 2, no traceback, nothing written; and the regressions of issue 13 (a failed Fisher run keeps the good
file, outputs get the user's umask, the Fisher checkpoint fingerprint covers every result-changing input)."""
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml
from run_helpers import tiny_train_config, write_rows

from e2wm import files
from e2wm.cli import main
from e2wm.train import fisher as fisher_mod
from e2wm.train.fisher import compute_fisher, select_base_params
from e2wm.train.fisher_checkpoint import fingerprint as _fingerprint, metadata as _metadata
from e2wm.train.fisher_io import FISHER_FILE, save_fisher
from e2wm.train.model import add_lora, byte_tokenizer, tiny_causal_lm

TEXTS = ["some general text", "and some more of it", "a third document"]


def _fisher_of(model, out: Path, **kw) -> Path:
    compute_fisher(model, TEXTS, byte_tokenizer(), max_length=32, out_dir=out, model_name="tiny", **kw)
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    """A workspace of good and bad inputs: every case below names its files relative to it."""
    w = tmp_path_factory.mktemp("bad-input")
    good = tiny_train_config(w / "run", tiny_model_dir, write_rows(w / "data.jsonl"))
    (w / "good.yaml").write_text(yaml.safe_dump(good))

    def config(name, **sections):
        cfg = json.loads(json.dumps(good))
        for k, v in sections.items():
            cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
        (w / name).write_text(yaml.safe_dump(cfg))

    # config files
    (w / "dup.yaml").write_text("optim:\n  lr: 1.0e-3\n  lr: 2.0e-3\n")
    (w / "latin1.yaml").write_bytes(b"out: caf\xe9\n")
    (w / "list.yaml").write_text("- optim\n- lora\n")
    (w / "cfgdir.yaml").mkdir()
    # data files
    for name, text in {"malformed.jsonl": '{"input": "a", "ref": "b"}\n{"input": \n',
                       "noref.jsonl": '{"input": "a"}\n', "nan.jsonl": '{"input": "a", "ref": "b", "weight": NaN}\n',
                       "negweight.jsonl": '{"input": "a", "ref": "b", "weight": -1}\n',
                       "array.jsonl": '["a", "b"]\n', "numref.jsonl": '{"input": "a", "ref": 3}\n'}.items():
        (w / name).write_text(text)
    (w / "latin1.jsonl").write_bytes(b'{"input": "caf\xe9", "ref": "b"}\n')
    (w / "nojsonl").mkdir()
    (w / "nojsonl" / "notes.txt").write_text("x")
    for name in ("malformed", "noref", "nan", "negweight", "array", "latin1", "numref"):
        config(f"data-{name}.yaml", data={"path": str(w / f"{name}.jsonl")})
    config("data-nojsonl.yaml", data={"path": str(w / "nojsonl")})
    # DeepSpeed JSON
    (w / "ds-bad.json").write_text('{"zero_optimization": ')
    (w / "ds-type.json").write_text('{"zero_optimization": {"stage": 2, "overlap_comm": "maybe"}}')
    (w / "ds-unknown.json").write_text('{"zero_optimization": {"stage": 2, "buckets_please": 1}}')
    (w / "ds-nan.json").write_text('{"gradient_clipping": NaN}')
    (w / "ds-bf16.json").write_text('{"bf16": 5}')
    (w / "ds-latin1.json").write_bytes(b'{"x": "caf\xe9"}')
    (w / "ds-list.json").write_text("[1, 2]")
    (w / "ds-batch.json").write_text('{"train_batch_size": 7}')   # DeepSpeed: not micro × accumulation × world
    # output folders
    (w / "outfile").write_text("mine")
    (w / "foreign").mkdir()
    (w / "foreign" / "thesis.tex").write_text("mine")
    config("out-file.yaml", out=str(w / "outfile"))
    config("out-foreign.yaml", out=str(w / "foreign"))
    (w / "foreign-config").mkdir()
    (w / "foreign-config" / "config.yaml").write_text("mine: true\n")   # a run would overwrite it
    config("out-foreign-config.yaml", out=str(w / "foreign-config"))
    # Fisher files
    (w / "fisher-empty").mkdir()
    (w / "garbage.safetensors").write_bytes(b"not a safetensors file at all")
    real = _fisher_of(add_lora(tiny_causal_lm()), w / "fisher-real") / FISHER_FILE
    data = real.read_bytes()
    (w / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (w / "fisher-dir-file").mkdir()
    (w / "fisher-dir-file" / FISHER_FILE).mkdir()   # fisher.safetensors that is a directory
    _fisher_of(add_lora(tiny_causal_lm(seed=1)), w / "fisher-other")
    save_fisher(w / "fisher-names", {"model.nothing.weight": torch.ones(3)}, {"model": "tiny"})
    _fisher_of(add_lora(tiny_causal_lm(hidden=64)), w / "fisher-shape")
    save_fisher(w / "fisher-meta", {"x": torch.ones(2)}, {"weight_sums": "{not json"})
    save_fisher(w / "fisher-nan", {k: torch.full_like(v, float("nan")) for k, v in
                                   compute_fisher(add_lora(tiny_causal_lm()), TEXTS, byte_tokenizer(),
                                                  max_length=32)[0].items()}, {"model": "tiny"})
    partial, meta = compute_fisher(add_lora(tiny_causal_lm()), TEXTS, byte_tokenizer(), max_length=32, modules="all")
    save_fisher(w / "fisher-partial", {k: v for k, v in partial.items() if k != "model.norm.weight"}, meta)
    for name in ("empty", "other", "names", "shape", "meta", "nan", "dir-file"):
        config(f"fisher-{name}.yaml", regularizer={"kind": "ewc_lora", "fisher": str(w / f"fisher-{name}")})
    for name in ("garbage", "truncated"):
        config(f"fisher-{name}.yaml", regularizer={"kind": "ewc_lora", "fisher": str(w / f"{name}.safetensors")})
    # corpora
    (w / "corpus.csv").write_text("a,b\n")
    (w / "corpus-bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    (w / "corpus-notext.jsonl").write_text('{"body": "ok"}\n')
    (w / "corpus-latin1.txt").write_bytes(b"caf\xe9\n")
    (w / "fisher-ckpt" / "checkpoint").mkdir(parents=True)
    (w / "fisher-ckpt" / "checkpoint" / "state.json").write_text("garbage{")
    # checkpoints and runs, written the way `e2wm train` writes them
    _fake_run(w / "fake-run")
    for name, change in {"state-garbage": lambda d: (d / "trainer_state.json").write_text("{{{"),
                         "state-list": lambda d: (d / "trainer_state.json").write_text("[1]"),
                         "state-keys": lambda d: (d / "trainer_state.json").write_text('{"step": 1}'),
                         "truncated": lambda d: (d / "trainable.safetensors").write_bytes(
                             (d / "trainable.safetensors").read_bytes()[:40]),
                         "no-moments": lambda d: _tensors(d, moments=False)}.items():
        r = _fake_run(w / f"run-{name}")
        change(r / "checkpoints" / "step-00000001")
    (w / "run-badinfo").mkdir()
    _fake_run(w / "run-badinfo")
    (w / "run-badinfo" / "run.json").write_text('{"lora": "yes"}')
    # adapters
    (w / "adapter-none").mkdir()
    (w / "adapter-garbage").mkdir()
    (w / "adapter-garbage" / "adapter_config.json").write_text("{garbage")
    (w / "adapter-list").mkdir()
    (w / "adapter-list" / "adapter_config.json").write_text("[]")
    (w / "adapter-nobase").mkdir()
    (w / "adapter-nobase" / "adapter_config.json").write_text('{"r": 8}')
    (w / "adapter-nobase-model").mkdir()
    (w / "adapter-nobase-model" / "adapter_config.json").write_text('{"base_model_name_or_path": "./no/such/base"}')
    (w / "adapter-broken").mkdir()
    (w / "adapter-broken" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"],
         "base_model_name_or_path": str(tiny_model_dir)}))
    (w / "adapter-broken" / "adapter_model.safetensors").write_bytes(b"garbage")
    (w / "adapter-ok").mkdir()
    (w / "adapter-ok" / "adapter_config.json").write_text('{"base_model_name_or_path": "tiny"}')
    return w


def _tensors(step: Path, moments: bool = True) -> None:
    from safetensors.torch import save_file
    t = {"param/base_model.model.lm_head.lora_A.default.weight": torch.zeros(2, 4)}
    if moments:
        t.update({f"{m}/base_model.model.lm_head.lora_A.default.weight": torch.zeros(2, 4)
                  for m in ("exp_avg", "exp_avg_sq")})
    save_file(t, str(step / "trainable.safetensors"))


def _fake_run(run: Path) -> Path:
    step = run / "checkpoints" / "step-00000001"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text(json.dumps(
        {"step": 1, "world_size": 1, "optimizer_steps": 1, "trajectory": "other", "data_sha256": "x", "lora": True}))
    _tensors(step)
    (run / "run.json").write_text(json.dumps(
        {"base_model": "tiny", "lora": True, "lora_config": {"r": 8, "alpha": 32, "dropout": 0.0,
                                                              "target_modules": ["lm_head"], "fan_in_fan_out": False}}))
    return run


def T(*sets, config="good.yaml", extra=()):
    """`e2wm train --config WS/config --set ...` (WS/ is replaced by the workspace)."""
    argv = ["train", "--config", f"WS/{config}", *extra]
    for s in sets:
        argv += ["--set", s]
    return argv


FI = ["fisher", "--model", "tiny", "--max-samples", "3", "--max-length", "24"]

CASES = [
    # ---- e2wm train: flags
    (["train", "--bogus"], ["--bogus"]),
    (["train", "--config"], ["--config"]),
    # ---- config fields: unknown keys, types, ranges with upper bounds
    (T("optim.lrr=1"), ["optim.lrr"]),
    (T("optim.lr=fast"), ["optim.lr"]),
    (T("optim.lr=1e9"), ["optim.lr"]),
    (T("optim.lr=-0.1"), ["optim.lr"]),
    (T("optim.epochs=0"), ["optim.epochs"]),
    (T("optim.epochs=2.5"), ["optim.epochs"]),
    (T("optim.max_steps=1000000000000"), ["optim.max_steps"]),
    (T("optim.global_batch_size=-4"), ["optim.global_batch_size"]),
    (T("optim.micro_batch_size=100000000"), ["optim.micro_batch_size"]),
    (T("optim.warmup_steps=-1"), ["optim.warmup_steps"]),
    (T("optim.betas=[0.9, 1.5]"), ["optim.betas"]),
    (T("optim.betas=0.9"), ["optim.betas"]),
    (T("optim.eps=0"), ["optim.eps"]),
    (T("optim.grad_clip=.nan"), ["optim.grad_clip"]),
    (T("optim.weight_decay=1e6"), ["optim.weight_decay"]),
    (T("optim.schedule=exponential"), ["optim.schedule"]),
    (T("optim.precision=fp8"), ["optim.precision"]),
    (T("data.max_length=1"), ["data.max_length"]),
    (T("data.max_length=100000000"), ["data.max_length"]),
    (T("data.task_weights={t: -1}"), ["data.task_weights"]),
    (T("data.task_weights=[1]"), ["data.task_weights"]),
    (T("data.pad_to_multiple_of=0"), ["data.pad_to_multiple_of"]),
    (T("data.group_batches=1e12"), ["data.group_batches"]),
    (T("lora.r=0"), ["lora.r"]),
    (T("lora.r=1000000"), ["lora.r"]),
    (T("lora.alpha=-1"), ["lora.alpha"]),
    (T("lora.dropout=1.0"), ["lora.dropout"]),
    (T("lora.target_modules=q_proj"), ["lora.target_modules"]),
    (T("lora.target_modules=['']"), ["lora.target_modules"]),
    (T("lora.enabled=maybe"), ["lora.enabled"]),
    (T("regularizer.lam=-1"), ["regularizer.lam"]),
    (T("regularizer.lam=1e30"), ["regularizer.lam"]),
    (T("regularizer.kl_batch_size=0"), ["regularizer.kl_batch_size"]),
    (T("regularizer.kl_max_length=10000000"), ["regularizer.kl_max_length"]),
    (T("regularizer.kind=l2"), ["regularizer.kind"]),
    (T("checkpoint.keep_last=0"), ["checkpoint.keep_last"]),
    (T("checkpoint.every=-1"), ["checkpoint.every"]),
    (T("checkpoint.kill_at_step=3"), ["kill_at_step"]),   # fault injection is a test hook, not a config key
    (T("logging.every=0"), ["logging.every"]),
    (T("logging.peak_tflops=-1"), ["logging.peak_tflops"]),
    (T("seed=-1"), ["seed"]),
    (T("seed=99999999999999"), ["seed"]),
    (T("out="), ["out"]),
    (T("model.name_or_path=./no/such/model"), ["model.name_or_path"]),
    (T("model.name_or_path=shape:gpt-7"), ["model.name_or_path"]),
    (T("model=tiny"), ["model"]),
    (T("deepspeed.zero_stage=5"), ["deepspeed.zero_stage"]),
    (T("deepspeed.config=zero7"), ["deepspeed.config"]),
    (T("deepspeed.config=WS/ds-bad.json"), ["ds-bad.json:1"]),
    (T("deepspeed.config=WS/ds-type.json"), ["ds-type.json", "overlap_comm"]),
    (T("deepspeed.config=WS/ds-unknown.json"), ["ds-unknown.json", "buckets_please"]),
    (T("deepspeed.config=WS/ds-nan.json"), ["ds-nan.json"]),
    (T("deepspeed.config=WS/ds-bf16.json"), ["ds-bf16.json", "bf16"]),
    (T("deepspeed.config=WS/ds-latin1.json"), ["ds-latin1.json", "UTF-8"]),
    (T("deepspeed.config=WS/ds-list.json"), ["ds-list.json"]),
    (T("deepspeed.config=WS/nojsonl"), ["deepspeed.config", "nojsonl"]),
    (T("deepspeed.config=WS/ds-batch.json"), ["ds-batch.json", "train_batch_size is 7"]),
    (T("data.sampling=sorted"), ["data.sampling"]),
    (["train", "--set", "nonsense"], ["--set"]),
    # ---- config files
    (T(config="dup.yaml"), ["dup.yaml", "duplicate key"]),
    (T(config="latin1.yaml"), ["latin1.yaml", "UTF-8"]),
    (T(config="list.yaml"), ["list.yaml", "mapping"]),
    (T(config="cfgdir.yaml"), ["cfgdir.yaml", "directory"]),
    (T(config="no-such.yaml"), ["no-such.yaml"]),
    # ---- training data
    (T("data.path=WS/no-such.jsonl"), ["data.path", "no-such.jsonl"]),
    (T(config="data-malformed.yaml"), ["malformed.jsonl:2"]),
    (T(config="data-noref.yaml"), ["noref.jsonl:1", "ref"]),
    (T(config="data-numref.yaml"), ["numref.jsonl:1", "ref"]),
    (T(config="data-nan.yaml"), ["nan.jsonl:1"]),
    (T(config="data-negweight.yaml"), ["negweight.jsonl:1", "weight"]),
    (T(config="data-array.yaml"), ["array.jsonl:1"]),
    (T(config="data-latin1.yaml"), ["latin1.jsonl:1", "UTF-8"]),
    (T(config="data-nojsonl.yaml"), ["data.path", "nojsonl"]),
    # ---- output folders
    (T(config="out-file.yaml"), ["out", "outfile", "not a directory"]),
    (T(config="out-foreign.yaml"), ["out", "foreign", "--force"]),
    (T(config="out-foreign-config.yaml"), ["out", "foreign-config", "run.json"]),
    # ---- resume
    (T(extra=["--resume", "WS/no-such-step"]), ["--resume", "no-such-step"]),
    (T(extra=["--resume", "WS/outfile"]), ["--resume", "outfile"]),
    (T(extra=["--resume", "WS/foreign"]), ["--resume", "trainer_state.json"]),
    (T(extra=["--resume", "WS/run-state-garbage/checkpoints/step-00000001"]), ["--resume", "trainer_state.json"]),
    (T(extra=["--resume", "WS/run-state-list/checkpoints/step-00000001"]), ["--resume", "trainer_state.json"]),
    (T(extra=["--resume", "WS/run-state-keys/checkpoints/step-00000001"]), ["--resume", "world_size"]),
    (T(extra=["--resume", "WS/run-truncated/checkpoints/step-00000001"]), ["--resume", "trainable.safetensors"]),
    (T(extra=["--resume", "WS/run-no-moments/checkpoints/step-00000001"]), ["--resume", "exp_avg"]),
    (T(extra=["--resume", "WS/fake-run/checkpoints/step-00000001"]), ["step-00000001", "another model"]),
    (T("checkpoint.resume=WS/no-such-step"), ["checkpoint.resume", "no-such-step"]),
    # ---- Fisher files for ewc_lora
    (T(config="fisher-empty.yaml"), ["regularizer.fisher", "fisher-empty"]),
    (T(config="fisher-dir-file.yaml"), ["regularizer.fisher", "fisher.safetensors", "directory"]),
    (T(config="fisher-garbage.yaml"), ["regularizer.fisher", "garbage.safetensors"]),
    (T(config="fisher-truncated.yaml"), ["regularizer.fisher", "truncated.safetensors"]),
    (T(config="fisher-meta.yaml"), ["regularizer.fisher", "weight_sums"]),
    (T("regularizer.kind=ewc_lora", "regularizer.fisher="), ["regularizer.fisher"]),
    (T("regularizer.kind=kl", "regularizer.corpus=WS/no-such.txt"), ["regularizer.corpus"]),
    (T("regularizer.kind=kl", "regularizer.corpus_start=5", "regularizer.corpus_end=5"), ["regularizer.corpus_end"]),
    # full fine-tuning trains every weight: a Fisher of the LoRA targets leaves most unpenalised
    (T("lora.enabled=false", "regularizer.kind=ewc", "regularizer.fisher=WS/fisher-real"),
     ["regularizer.fisher", "fisher-real", "lora-targets", "e2wm fisher --modules all"]),
    # these load the tiny model: only the model can tell a Fisher of another model
    (T(config="fisher-other.yaml"), ["regularizer.fisher", "another model"]),
    (T(config="fisher-names.yaml"), ["regularizer.fisher", "has no entry"]),
    (T(config="fisher-shape.yaml"), ["regularizer.fisher", "shape"]),
    (T(config="fisher-nan.yaml"), ["regularizer.fisher", "NaN"]),
    (T("lora.enabled=false", "regularizer.kind=ewc", "regularizer.fisher=WS/fisher-partial"),
     ["regularizer.fisher", "no entry for model.norm.weight", "e2wm fisher --modules all"]),
    (T("regularizer.kind=kl", "regularizer.corpus_start=70", "regularizer.corpus_end=90"),
     ["regularizer.corpus_start..corpus_end", "70..89", "builtin:pydoc"]),
    # ---- e2wm fisher
    ([*FI, "--out", "WS/f", "--micro-batch", "-2"], ["--micro-batch"]),
    ([*FI, "--out", "WS/f", "--micro-batch", "x"], ["--micro-batch"]),
    ([*FI, "--out", "WS/f", "--micro-batch", "100000"], ["--micro-batch"]),
    ([*FI, "--out", "WS/f", "--max-samples", "-1"], ["--max-samples"]),
    ([*FI, "--out", "WS/f", "--max-length", "-5"], ["--max-length"]),
    ([*FI, "--out", "WS/f", "--max-length", "1000000000"], ["--max-length"]),
    ([*FI, "--out", "WS/f", "--checkpoint-every", "-1"], ["--checkpoint-every"]),
    ([*FI, "--out", "WS/f", "--zero-stage", "1"], ["--zero-stage"]),
    ([*FI, "--out", "WS/f", "--modules", "some"], ["--modules"]),
    ([*FI, "--out", "WS/f", "--lora-targets", ","], ["--lora-targets"]),
    ([*FI, "--out", "WS/f", "--bogus"], ["--bogus"]),
    (["fisher", "--model", "tiny"], ["--out"]),
    (["fisher", "--model", "./no/such/model", "--out", "WS/f"], ["--model", "no/such/model"]),
    (["fisher", "--model", "", "--out", "WS/f"], ["--model"]),
    (["fisher", "--model", "WS/foreign", "--out", "WS/f"], ["--model", "config.json"]),
    ([*FI, "--out", "WS/f", "--corpus", "WS/no-such.txt"], ["--corpus", "no-such.txt"]),
    ([*FI, "--out", "WS/f", "--corpus", "WS/corpus.csv"], ["corpus.csv"]),
    ([*FI, "--out", "WS/f", "--corpus", "WS/corpus-bad.jsonl"], ["corpus-bad.jsonl:2"]),
    ([*FI, "--out", "WS/f", "--corpus", "WS/corpus-notext.jsonl"], ["corpus-notext.jsonl:1", "text"]),
    ([*FI, "--out", "WS/f", "--corpus", "WS/corpus-latin1.txt"], ["corpus-latin1.txt", "UTF-8"]),
    ([*FI, "--out", "WS/outfile"], ["--out", "outfile"]),
    ([*FI, "--out", "WS/foreign"], ["--out", "foreign", "--force"]),
    ([*FI, "--out", "WS/fisher-ckpt", "--checkpoint-every", "2"], ["checkpoint/state.json", "remove"]),   # loads tiny
    ([*FI, "--out", "WS/f", "--lora-targets", "nosuch_proj"], ["--lora-targets"]),               # loads tiny
    # ---- e2wm export
    (["export", "WS/no-such-run", "--out", "WS/x"], ["no-such-run"]),
    (["export", "WS/outfile", "--out", "WS/x"], ["outfile", "not a directory"]),
    (["export", "WS/foreign", "--out", "WS/x"], ["foreign", "not a checkpoint"]),
    (["export", "WS/run-state-garbage", "--out", "WS/x"], ["trainer_state.json"]),
    (["export", "WS/run-truncated", "--out", "WS/x"], ["trainable.safetensors"]),
    (["export", "WS/run-badinfo", "--out", "WS/x"], ["run.json"]),
    (["export", "WS/fake-run", "--out", "WS/outfile"], ["--out", "outfile"]),
    (["export", "WS/fake-run", "--out", "WS/foreign"], ["--out", "foreign"]),
    (["export", "WS/fake-run", "--out", "WS/fake-run", "--force"], ["--out", "fake-run", "input"]),
    (["export", "WS/fake-run", "--out", "WS", "--force"], ["--out", "input"]),
    (["export", "WS/fake-run"], ["--out"]),
    # ---- e2wm merge
    (["merge", "--adapter", "WS/no-such-adapter", "--out", "WS/x"], ["no-such-adapter"]),
    (["merge", "--adapter", "WS/outfile", "--out", "WS/x"], ["outfile", "not a directory"]),
    (["merge", "--adapter", "WS/adapter-none", "--out", "WS/x"], ["adapter_config.json"]),
    (["merge", "--adapter", "WS/adapter-garbage", "--out", "WS/x"], ["adapter_config.json:1"]),
    (["merge", "--adapter", "WS/adapter-list", "--out", "WS/x"], ["adapter_config.json"]),
    (["merge", "--adapter", "WS/adapter-nobase", "--out", "WS/x"], ["adapter_config.json", "--base"]),
    (["merge", "--adapter", "WS/adapter-nobase-model", "--out", "WS/x"], ["base_model_name_or_path", "no/such/base"]),
    (["merge", "--adapter", "WS/adapter-ok", "--base", "./no/such/base", "--out", "WS/x"], ["--base", "no/such/base"]),
    (["merge", "--adapter", "WS/adapter-ok", "--base", "shape:gpt-7", "--out", "WS/x"], ["--base", "gpt-7"]),
    (["merge", "--adapter", "WS/adapter-ok", "--out", "WS/outfile"], ["--out", "outfile"]),
    (["merge", "--adapter", "WS/adapter-ok", "--out", "WS/foreign"], ["--out", "foreign"]),
    (["merge", "--adapter", "WS/adapter-ok", "--out", "WS/adapter-ok", "--force"], ["--out", "input"]),
    (["merge", "--adapter", "WS/adapter-broken", "--out", "WS/x"], ["--adapter", "adapter-broken"]),   # loads tiny
    (["merge", "--out", "WS/x"], ["--adapter"]),
]


@pytest.mark.parametrize("argv, names", CASES, ids=[f"{i:03d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line(ws, cli_error, argv, names):
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    cli_error([str(ws) if a == "WS" else a.replace("WS/", f"{ws}/") for a in argv], names)
    after = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    assert after == before, f"bad input wrote {set(after) - set(before)} or removed {set(before) - set(after)}"


def test_cases_are_many_and_distinct():
    assert len({tuple(a) for a, _ in CASES}) == len(CASES) >= 45


# ---------------------------------------------------------------- regressions

@pytest.fixture
def umask_022(monkeypatch):
    old = os.umask(0o022)
    monkeypatch.setattr(files, "_UMASK", None)   # file_mode() caches the umask
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_failed_fisher_run_keeps_the_good_file(tmp_path, cli_error, monkeypatch, umask_022):
    out = tmp_path / "f"
    assert main([*FI, "--out", str(out)]) == 0
    good = (out / FISHER_FILE).read_bytes()
    assert _mode(out / FISHER_FILE) == 0o644
    cli_error([*FI, "--out", str(out), "--micro-batch", "-2"], ["--micro-batch"])
    assert (out / FISHER_FILE).read_bytes() == good

    real = fisher_mod._per_sample_losses
    monkeypatch.setattr(fisher_mod, "_per_sample_losses",
                        lambda *a, **k: real(*a, **k) * float("nan"))
    cli_error([*FI, "--out", str(out)], ["NaN"])
    assert (out / FISHER_FILE).read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == [FISHER_FILE]   # no temporary left behind


def test_train_export_and_merge_outputs_get_the_umask(ws, tmp_path, umask_022):
    cfg = yaml.safe_load((ws / "good.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "t.yaml")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "adapter")]) == 0
    assert main(["merge", "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "t.yaml"]
    assert {p.name for p in written} >= {"trainable.safetensors", "adapter_model.safetensors", "model.safetensors",
                                         "run.json", "config.yaml", "trainer_state.json", "metrics.jsonl"}
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in written if _mode(p) != 0o644} == {}
    # an earlier export is replaced; the same export again succeeds
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "adapter")]) == 0


def test_fisher_fingerprint_covers_every_result_changing_input():
    def fp(model=None, texts=TEXTS, modules="lora-targets", max_length=32, zero="none", world=1,
           targets=None, name="tiny", method="batch"):
        model = model or add_lora(tiny_causal_lm(), targets=targets)
        return _fingerprint(_metadata(name, texts, modules, max_length, zero, world, method),
                            select_base_params(model, modules))

    base = fp()
    assert fp() == base   # deterministic
    changed = {"max_length": fp(max_length=33), "corpus": fp(texts=TEXTS[:2]), "modules": fp(modules="all"),
               "targets": fp(targets=["q_proj", "k_proj"]), "weights": fp(model=add_lora(tiny_causal_lm(seed=1))),
               "zero stage": fp(zero=3), "world": fp(world=2), "model name": fp(name="other"),
               "method": fp(method="loop")}
    assert [k for k, v in changed.items() if v == base] == []


def test_a_resume_with_other_arguments_is_refused(tmp_path):
    from e2wm.errors import E2WMError
    from e2wm.train.fisher import FisherInterrupted

    with pytest.raises(FisherInterrupted):
        _fisher_of(add_lora(tiny_causal_lm()), tmp_path, checkpoint_every=1, stop_after=1)
    with pytest.raises(E2WMError, match="different arguments"):   # another model's weights, same name
        _fisher_of(add_lora(tiny_causal_lm(seed=1)), tmp_path, checkpoint_every=1)
    with pytest.raises(E2WMError, match="different arguments"):   # other LoRA targets
        _fisher_of(add_lora(tiny_causal_lm(), targets=["q_proj"]), tmp_path, checkpoint_every=1)
