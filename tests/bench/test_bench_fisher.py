"""`e2wm bench fisher` measures what `e2wm fisher` runs."""
import torch

from e2wm.bench import regularizers
from e2wm.train import fisher_run


def test_bench_fisher_bf16_runs_the_clis_model_and_precision(monkeypatch):
    """The model is built as the CLI builds it (base in the precision, `fisher_run.lora_model`: peft keeps the
    zero-init LoRA in fp32), and the precision reported is the one the Fisher recorded. ~3 s."""
    built, real = [], fisher_run.lora_model

    def spy(base, targets=None):
        built.append(next(base.parameters()).dtype)
        return real(base, targets)
    monkeypatch.setattr(fisher_run, "lora_model", spy)
    r = regularizers.run_fisher(samples=4, hidden=32, layers=1, heads=2, seq=16, micro_batch=2, repeats=1,
                                precision="bf16")
    assert built == [torch.bfloat16]
    assert (r["precision"], r["gradient_checkpointing"]) == ("bf16", "false")
