"""`--preset frontier-mini`: its arms, fixed in the preset, expand to every run the issue asks for (3 seeds a
point, a λ grid of 5 values for EWC-LoRA and for its uniform-F control at the same λ, E2WM's int8 arm, kl on its
own documents, full fine-tuning with EWC), on four disjoint slices of builtin:stdlib; and the Fisher covers
every weight a penalty reads."""
from collections import Counter

from e2wm.config import read_yaml
from e2wm.pipeline.config import PipelineConfig


def _cfg(**over):
    data, where = read_yaml(None, "pipeline-frontier-mini.yaml")
    return PipelineConfig.from_dict({**data, **over}, where)


def test_the_frontier_preset_has_every_arm_with_three_seeds():
    cfg = _cfg()
    runs = cfg.expanded_runs()
    arms = Counter(r.arm for r in runs.values())
    assert arms == {"lora": 6, "ewc_lora": 15, "l2": 15, "ewc_lora_int8": 3, "kl": 3, "ewc": 3}
    assert {r.seed for r in runs.values()} == {1, 2, 3}
    tc = {name: cfg.train_config(name, "OUT", "MODEL") for name in runs}
    lams = {arm: sorted({t.regularizer.lam for n, t in tc.items() if runs[n].arm == arm}) for arm in ("ewc_lora", "l2")}
    assert lams["ewc_lora"] == lams["l2"] and len(lams["l2"]) >= 5 and lams["l2"][-1] / lams["l2"][0] >= 1e4
    scale = {runs[n].arm: t.regularizer.fisher_scale for n, t in tc.items() if t.regularizer.kind == "ewc_lora"}
    assert scale == {"ewc_lora": "mean", "l2": "uniform", "ewc_lora_int8": "e2wm_int8"}
    assert {t.regularizer.kind for n, t in tc.items() if runs[n].arm == "kl"} == {"kl"}
    assert all(not t.lora.enabled for n, t in tc.items() if runs[n].arm == "ewc")
    assert cfg.sweep.snapshots and cfg.corpus == "builtin:stdlib"


def test_the_fisher_covers_what_each_penalty_reads():
    """An ewc_lora run that names its own LoRA targets (here every linear layer) needs a Fisher of more than the
    architecture's default targets: the pipeline computes it over every weight."""
    assert _cfg().fisher_modules() == "all"
    plain = _cfg(runs={"ewc_lora": {"regularizer": {"kind": "ewc_lora"}}}, sweep={},
                 train={"lora": {"r": 8}, "optim": {"lr": 1e-3}})
    assert plain.fisher_modules() == "lora-targets"
    own = _cfg(runs={"ewc_lora": {"regularizer": {"kind": "ewc_lora"}, "lora": {"target_modules": ["q_proj"]}}},
               sweep={}, train={})
    assert own.fisher_modules() == "all"
