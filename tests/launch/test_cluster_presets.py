"""The paper presets as a cluster runs them: gradient checkpointing on in training and in the Fisher (the README's
memory table assumes it), LoRA training under ZeRO-2 where the replicated bf16 weights fit an 80 GB GPU, the Fisher
of 6B/13B partitioned (ZeRO-3). Under a second."""
import pytest

from e2wm.config import build, read_yaml
from e2wm.pipeline.config import PipelineConfig



def _preset(name: str) -> PipelineConfig:
    data, where = read_yaml(None, f"pipeline-{name}.yaml")
    return build(PipelineConfig, data, where)


@pytest.mark.parametrize("name, fisher_stage", [("gpt-neo-1.3b", 2), ("gpt-j-6b", 3), ("llama-13b", 3)])
def test_big_presets_checkpoint_and_train_lora_under_zero2(name, fisher_stage):
    cfg = _preset(name)
    assert cfg.fisher.gradient_checkpointing and cfg.fisher.zero_stage == fisher_stage
    for run in ("lora", "ewc_lora"):
        train = cfg.train_config(run, "OUT", "MODEL")
        assert train.model.gradient_checkpointing, run
        assert train.lora.enabled and train.optim.precision == "bf16"
        assert train.deepspeed.config == "zero2", run
