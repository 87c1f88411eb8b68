"""`e2wm train` configs: every bad one fails in one line naming the field, exit 2, before any heavy work;
DeepSpeed JSON "auto" values come from the train config."""
import json

import pytest
import yaml

from e2wm.config import build
from e2wm.errors import E2WMError
from e2wm.train import recipe
from e2wm.train.__main__ import main
from e2wm.train.config import TrainConfig, gradient_accumulation, load_train_config
from e2wm.train.ds_config import deepspeed_config


@pytest.fixture
def good(tmp_path, built_dataset):
    """A valid config file (LoRA, no regulariser) and the paths it uses."""
    cfg = {"out": str(tmp_path / "run"), "data": {"path": str(built_dataset)},
           "regularizer": {"kind": "none"}, "optim": {"precision": "fp32"}}
    f = tmp_path / "train.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail the test if training would start: config errors must come first."""
    def refuse(*a, **k):
        raise AssertionError("heavy work started")
    monkeypatch.setattr(recipe, "run", refuse)


@pytest.mark.parametrize("sets, names", [
    (["optim.lrr=1"], "optim.lrr"),                                          # unknown key
    (["optim.lr=fast"], "optim.lr"),                                         # wrong type
    (["optim.epochs=2.5"], "optim.epochs"),
    (["lora.target_modules=q_proj"], "lora.target_modules"),                 # a string where a list is expected
    (["data.path=no/such/data"], "data.path"),                               # missing dataset
    (["model.name_or_path=./no/such/model"], "model.name_or_path"),          # missing model
    (["model.name_or_path=shape:gpt-7"], "model.name_or_path"),
    (["regularizer.kind=ewc_lora", "regularizer.fisher=no/such/fisher"], "regularizer.fisher"),
    (["regularizer.kind=ewc_lora", "regularizer.fisher="], "regularizer.fisher"),
    (["regularizer.kind=ewc"], "lora.enabled"),
    (["regularizer.kind=kl", "regularizer.corpus=no/such.jsonl"], "regularizer.corpus"),
    (["regularizer.kind=l2"], "regularizer.kind"),
    (["deepspeed.zero_stage=5"], "deepspeed.zero_stage"),                    # ZeRO stage outside 0-3
    (["deepspeed.config=zero7"], "deepspeed.config"),
    (["data.sampling=random"], "data.sampling"),
    (["optim.micro_batch_size=0"], "optim.micro_batch_size"),
    (["optim.precision=bf16", "deepspeed.zero_stage=0"], "deepspeed.zero_stage"),
    (["lora.dropout=1.5"], "lora.dropout"),
    (["checkpoint.keep_last=0"], "checkpoint.keep_last"),
    (["nonsense"], "--set"),
])
def test_bad_config_is_one_line_exit_2_before_heavy_work(good, no_heavy_work, capsys, sets, names):
    args = ["--config", str(good)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("e2wm: error:") and names in err[0], err


def test_errors_name_the_file(tmp_path, no_heavy_work, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lr: 1e-4\n  global_batch_size: twenty\n")
    assert main(["--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}" in err and "optim.global_batch_size" in err


def test_any_world_size_trains_and_what_deepspeed_would_refuse_names_its_key(good, tmp_path, no_heavy_work, capsys,
                                                                             monkeypatch):
    """20 rows in micro-batches of 2 on 3 ranks: 4 accumulation steps, 24 slots (issue 20). A DeepSpeed JSON whose
    fixed train_batch_size is not micro × accumulation × world on this world size fails in one line naming it."""
    monkeypatch.setenv("WORLD_SIZE", "3")   # as a launcher would set it
    batch = ["--set", "optim.global_batch_size=20", "--set", "optim.micro_batch_size=2"]
    with pytest.raises(AssertionError, match="heavy work started"):   # the config passed every check
        main(["--config", str(good), *batch])
    mine = tmp_path / "ds.json"
    mine.write_text(json.dumps({"train_batch_size": 20}))
    assert main(["--config", str(good), *batch, "--set", f"deepspeed.config={mine}"]) == 2
    err = capsys.readouterr().err
    assert "ds.json: train_batch_size is 20" in err and "(2 × 4 × 3) gives 24" in err, err
    monkeypatch.setenv("WORLD_SIZE", "5")   # 2 × 2 × 5 = 20: the same JSON is fine on 5 ranks
    with pytest.raises(AssertionError, match="heavy work started"):
        main(["--config", str(good), *batch, "--set", f"deepspeed.config={mine}"])


def test_user_deepspeed_json(tmp_path, good):
    cfg = load_train_config(str(good))
    mine = tmp_path / "ds.json"
    mine.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto",
                                "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"},
                                "bf16": {"enabled": "auto"}, "wall_clock_breakdown": True}))
    cfg = build(TrainConfig, {**cfg.to_dict(), "deepspeed": {"config": str(mine)}})
    ds = deepspeed_config(cfg, world=5, hidden=64)
    assert ds["train_batch_size"] == 20 and ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["gradient_accumulation_steps"] == gradient_accumulation(cfg, 5) == 1
    uneven = deepspeed_config(cfg, world=3)   # 20 rows over 3 ranks × 2 steps × 4: DeepSpeed's batch is 24 slots
    assert (uneven["train_batch_size"], uneven["gradient_accumulation_steps"]) == (24, 2)
    assert ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64 and ds["bf16"]["enabled"] is False
    assert ds["wall_clock_breakdown"] is True          # the user's other settings stay
    mine.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8}))
    with pytest.raises(E2WMError, match="train_micro_batch_size_per_gpu is 8 but optim.micro_batch_size"):
        deepspeed_config(cfg, world=5)
    mine.write_text(json.dumps({"gradient_accumulation_steps": 1}))   # right on 5 ranks, not on 2
    assert deepspeed_config(cfg, world=5)["gradient_accumulation_steps"] == 1
    with pytest.raises(E2WMError, match=r"gradient_accumulation_steps is 1 but ceil\(optim.global_batch_size 20"):
        deepspeed_config(cfg, world=2)
    mine.write_text('{"zero_optimization": {"stage": 7}}')
    with pytest.raises(E2WMError, match=r"ds.json: zero_optimization.stage"):
        deepspeed_config(cfg, world=5)
    mine.write_text('{"zero_optimization": ')
    with pytest.raises(E2WMError, match=r"ds.json:1:\d+: malformed JSON"):
        deepspeed_config(cfg, world=5)


@pytest.mark.parametrize("name, stage", [("zero2", 2), ("zero3", 3), ("zero3_offload", 3)])
def test_packaged_deepspeed_configs_fill_every_auto(good, name, stage):
    cfg = build(TrainConfig, {**load_train_config(str(good)).to_dict(), "deepspeed": {"config": name}})
    ds = deepspeed_config(cfg, world=5, hidden=2048)
    assert ds["zero_optimization"]["stage"] == stage and "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == ds["train_micro_batch_size_per_gpu"] * 5 * ds["gradient_accumulation_steps"]


def test_trajectory_hash_ignores_what_a_resume_may_change(good):
    a = load_train_config(str(good))
    same = load_train_config(str(good), ["optim.micro_batch_size=2", "deepspeed.config=zero3", "logging.every=1",
                                         "checkpoint.every=7", "out=elsewhere"])
    other = load_train_config(str(good), ["optim.lr=1e-3"])
    assert a.trajectory_hash() == same.trajectory_hash() != other.trajectory_hash()


def test_partial_section_keeps_the_other_defaults(good):
    cfg = load_train_config(str(good), ["lora.r=4"])
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (4, 32, 0.1)
