"""Shared config plumbing: typed building, `--set` overrides, flags derived from the fields."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

import e2wm.cli as cli
from e2wm.collect.config import CollectConfig
from e2wm.config import add_field_flags, apply_sets, build, flag_values, to_plain
from e2wm.errors import E2WMError


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    schedule: Literal["cosine", "linear"] = "cosine"

    def __post_init__(self):
        if self.lr <= 0:
            raise E2WMError(f"lr={self.lr}: must be > 0")


@dataclass(frozen=True)
class Job:
    name: str = field(default="run", metadata={"help": "the run's name"})
    steps: int = field(default=10, metadata={"help": "optimizer steps"})
    limit: Optional[int] = field(default=None, metadata={"help": "stop after this many rows"})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "how hard to try"})
    verbose: bool = False
    tags: tuple[str, ...] = ()
    pair: tuple[str, float] = ("a", 1.0)
    weights: dict[str, float] = field(default_factory=dict)
    optim: Optim = field(default_factory=Optim)


def _err(data, where="train.yaml") -> str:
    with pytest.raises(E2WMError) as e:
        build(Job, data, where)
    return str(e.value)


def test_type_errors_name_the_file_and_the_dotted_field():
    assert _err({"optim": {"lr": "fast"}}) == "train.yaml: optim.lr: expected a number, got 'fast'"
    assert _err({"steps": 2.5}) == "train.yaml: steps: expected an int, got 2.5"
    assert _err({"steps": True}).startswith("train.yaml: steps: expected an int")
    assert _err({"verbose": "yes"}).startswith("train.yaml: verbose: expected true or false")
    assert _err({"tags": ["a", 3]}).startswith("train.yaml: tags[1]: expected a string")
    assert _err({"weights": {"x": "heavy"}}).startswith("train.yaml: weights.x: expected a number")
    assert _err({"optim": 3}).startswith("train.yaml: optim: expected a mapping")
    assert _err({"optim": {"lr": -1.0}}) == "train.yaml: optim.lr=-1.0: must be > 0"


def test_unknown_keys_are_refused_with_their_dotted_names():
    assert _err({"stepz": 1}).startswith("train.yaml: unknown key(s) stepz; known: ")
    msg = _err({"optim": {"lrr": 1.0, "lr": 0.1}})
    assert "unknown key(s) optim.lrr; known: lr, schedule" in msg


def test_optional_literal_tuple_dict_and_nested_values_are_coerced():
    job = build(Job, {"limit": None, "mode": "slow", "tags": ["x", "y"], "pair": ["b", 2],
                      "weights": {"x": 1}, "optim": {"lr": 1, "schedule": "linear"}})
    assert job == Job(limit=None, mode="slow", tags=("x", "y"), pair=("b", 2.0), weights={"x": 1.0},
                      optim=Optim(lr=1.0, schedule="linear"))
    assert type(job.pair[1]) is float and type(job.optim.lr) is float
    assert build(Job, {"limit": 3}).limit == 3
    assert "limit: expected an int or null, got 'x'" in _err({"limit": "x"})
    assert "mode: expected one of 'fast', 'slow', got 'medium'" in _err({"mode": "medium"})
    assert "pair: expected a list of 2 items" in _err({"pair": ["b"]})
    assert build(Job, to_plain(job)) == job
    assert to_plain(job)["tags"] == ["x", "y"]


def test_apply_sets_makes_nested_keys_and_parses_yaml_values():
    data = {"optim": {"lr": 0.1}, "steps": 3}
    out = apply_sets(data, ["optim.schedule=linear", "steps=7", "tags=[a, b]", "verbose=true",
                            "new.deep.key=0.5", "name="])
    assert out == {"optim": {"lr": 0.1, "schedule": "linear"}, "steps": 7, "tags": ["a", "b"],
                   "verbose": True, "new": {"deep": {"key": 0.5}}, "name": ""}
    assert data == {"optim": {"lr": 0.1}, "steps": 3}     # the caller's mapping is left alone
    assert apply_sets(data, ["optim.lr=2", "optim.lr=3"])["optim"]["lr"] == 3   # the last one wins
    with pytest.raises(E2WMError, match="expected section.key=value"):
        apply_sets(data, ["steps"])
    with pytest.raises(E2WMError, match="steps is not a section"):
        apply_sets(data, ["steps.x=1"])


def test_add_field_flags_derives_one_flag_per_scalar_field_with_its_help():
    p = argparse.ArgumentParser()
    names = add_field_flags(p, Job, skip=("name",))
    assert names == ["steps", "limit", "mode"]      # bool, tuple, dict and section fields have none
    assert "optimizer steps" in p.format_help() and "how hard to try" in p.format_help()
    args = p.parse_args(["--steps", "4", "--mode", "slow"])
    assert flag_values(args, names) == {"steps": 4, "mode": "slow"}
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "four"])


def _collect_help(capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main(["collect", "--help"])
    return " ".join(capsys.readouterr().out.split())


def _scalar_fields(cls) -> list[dataclasses.Field]:
    p = argparse.ArgumentParser()
    names = add_field_flags(p, cls)
    return [f for f in dataclasses.fields(cls) if f.name in names]


def test_every_scalar_collect_field_is_an_e2wm_collect_flag_with_its_help(capsys):
    text = _collect_help(capsys)
    fields = _scalar_fields(CollectConfig)
    assert len(fields) == 14
    for f in fields:
        assert f.metadata["help"] and f"--{f.name.replace('_', '-')} " in text
        assert " ".join(f.metadata["help"].split()) in text
    for extra in ("--activity", "--simulations", "--set", "--config", "--preset"):
        assert extra in text


def test_collect_flags_follow_the_config_rather_than_a_hand_written_list(capsys, monkeypatch):
    @dataclass(frozen=True)
    class Grown(CollectConfig):
        new_knob: int = field(default=0, metadata={"help": "a field added later"})
    monkeypatch.setattr(cli, "CollectConfig", Grown)
    assert "--new-knob NEW_KNOB a field added later" in _collect_help(capsys)


def test_a_partial_section_keeps_the_fields_own_defaults():
    """`mcts: {max_depth: 20}` changes one key of CollectConfig's planner (2,000 simulations), not its class
    defaults (20,000); a section's own check errors carry the dotted field name once."""
    from e2wm.collect.config import CollectConfig
    cfg = CollectConfig.from_dict({"mcts": {"max_depth": 20}})
    assert (cfg.mcts.simulations, cfg.mcts.max_depth) == (CollectConfig().mcts.simulations, 20) == (2000, 20)
    with pytest.raises(E2WMError, match=r"^job.yaml: mcts.simulations=0: must be in \[1, 10000000\]$"):
        CollectConfig.from_dict({"mcts": {"simulations": 0}}, "job.yaml")


def test_floats_written_like_1e_4_are_numbers():
    """YAML 1.1 reads `1e-4` (no dot) as a string; a float field takes it as the number."""
    from e2wm.data.config import DataConfig
    assert build(DataConfig, {"threshold": "5e-1"}).threshold == 0.5
    with pytest.raises(E2WMError, match="threshold: expected a number"):
        build(DataConfig, {"threshold": "half"})
