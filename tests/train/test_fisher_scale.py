"""The Fisher at scale: bf16 weights with fp32 squares, gradient checkpointing, ZeRO-3 partitioned loading."""
import subprocess
from pathlib import Path

import pytest
import torch

from e2wm.errors import E2WMError
from e2wm.train import dist as edist
from e2wm.train.corpus import load_texts
from e2wm.train.fisher import compute_fisher
from e2wm.train.fisher_io import load_fisher
from e2wm.train.fisher_run import entry as main_fisher
from e2wm.train.fisher_run import lora_model
from e2wm.train.model import byte_tokenizer, tiny_causal_lm
from e2wm.train.per_sample import weight_squares

TOK = byte_tokenizer()


def texts(n=8):
    return [t[:10 + 7 * i] for i, t in enumerate(load_texts("builtin:pydoc", n))]   # unequal lengths


def fisher(dtype=torch.float32, **kw):
    kw = {"max_length": 64, "micro_batch": 4, **kw}
    return compute_fisher(lora_model(tiny_causal_lm().to(dtype)), kw.pop("texts", texts()), TOK, **kw)


def frobenius(a: dict, b: dict) -> float:
    """The largest relative Frobenius error of one weight's F."""
    return max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in b)


def totals(a: dict, b: dict) -> float:
    """The largest relative error of one weight's Σ F."""
    return max(abs(a[k].double().sum() / b[k].double().sum() - 1).item() for k in b)


def test_bf16_fisher_is_within_bf16_rounding_of_fp32():
    """bf16 weights and matmuls, squares in fp32. bf16 keeps ~3 significant digits, so per element F
    differs by ~1%; measured on this case: per weight relative Frobenius 9.0e-3, Σ F 3.0e-3 (the fp32
    reference's own sampling noise, one half of a corpus against the other, is 0.3-0.8). 1e-3 is not
    reachable with a bf16 forward on any of these measures. The error must not be 0 either: then the
    forward did not run in bf16. ~2 s."""
    ref, _ = fisher()
    for method in ("batch", "loop"):
        got, meta = fisher(torch.bfloat16, method=method)
        assert meta["precision"] == "bf16" and all(v.dtype == torch.float32 for v in got.values())
        assert 1e-4 < frobenius(got, ref) <= 2e-2, frobenius(got, ref)
        assert totals(got, ref) <= 1e-2, totals(got, ref)


def test_rounding_the_weights_to_bf16_alone_moves_f_past_1e_3():
    """Why the bf16 Fisher is held to 2e-2, not 1e-3: a bf16 matmul takes its weight rounded to bf16 (8
    significant bits), and that rounding alone, every product still in fp32, moves F by more than 1e-3 over
    the whole model (measured 3.5e-3; a bf16 forward on the rounded weights adds as much again). ~1 s."""
    ref, _ = fisher()
    rounded, _ = compute_fisher(lora_model(tiny_causal_lm().to(torch.bfloat16).float()), texts(), TOK,
                                max_length=64, micro_batch=4)
    whole = (sum(((rounded[k] - ref[k]) ** 2).sum() for k in ref) / sum((ref[k] ** 2).sum() for k in ref)).sqrt()
    assert 1e-3 < whole.item() < 2e-2, whole.item()


def test_bf16_squares_are_summed_in_fp32():
    """20 copies of one text: F is their mean, so it equals one copy's F up to fp32 rounding; a sum kept
    in bf16 (8 significant bits) would drift by ~1e-3. ~1 s."""
    one, _ = fisher(torch.bfloat16, texts=texts(1)[:1] * 2, micro_batch=2)
    many, _ = fisher(torch.bfloat16, texts=texts(1)[:1] * 20, micro_batch=2)
    assert frobenius(many, one) <= 1e-5


def test_weight_squares_of_bf16_factors_are_fp32():
    g = torch.Generator().manual_seed(0)
    x, gr = (torch.randn(3, 5, n, generator=g).to(torch.bfloat16) for n in (7, 4))
    got = weight_squares(x, gr)
    want = torch.einsum("bto,bti->boi", gr.double(), x.double()).pow(2).sum(0)
    assert got.dtype == torch.float32 and ((got.double() - want).norm() / want.norm()).item() <= 1e-6


def test_fp16_weights_are_refused():
    with pytest.raises(E2WMError, match=r"float16.*fp32 or bf16 \(--precision\)"):
        fisher(torch.float16, texts=texts(2))


@pytest.mark.parametrize("modules", ["lora-targets", "all"])
def test_gradient_checkpointing_recomputes_each_layer_and_keeps_f(modules):
    """Each layer runs again in backward (its q_proj twice per forward), F unchanged, for the batch path
    (linear weights) and the per-sample loop path (embeddings, norms: modules all). ~3 s."""
    ref, _ = fisher(modules=modules)
    model = lora_model(tiny_causal_lm())
    q = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    calls = []
    q.register_forward_hook(lambda *a: calls.append(1))
    got, meta = compute_fisher(model, texts(), TOK, max_length=64, micro_batch=4, modules=modules,
                               gradient_checkpointing=True)
    plain = len(calls)
    calls.clear()
    compute_fisher(model, texts(), TOK, max_length=64, micro_batch=4, modules=modules)
    # batch path: one forward, each layer run again by the backward; the loop path adds a forward per sample
    assert plain == 2 * len(calls) if modules == "lora-targets" else plain > 2 * len(calls)
    assert meta["gradient_checkpointing"] == "true" and frobenius(got, ref) <= 1e-6
    assert "forward" not in vars(model.base_model.model.model.layers[0])   # the layers are left unwrapped


class SavedPeak(torch.autograd.graph.saved_tensors_hooks):
    """The peak bytes of tensors saved for backward that are alive at once (freed with their graph)."""

    def __init__(self):
        self.live = self.peak = 0
        outer = self

        class Held:
            def __init__(self, t):
                self.t, self.n = t, t.numel() * t.element_size()
                outer.live += self.n
                outer.peak = max(outer.peak, outer.live)

            def __del__(self):
                outer.live -= self.n
        super().__init__(Held, lambda h: h.t)


def test_gradient_checkpointing_holds_one_layers_activations():
    """Saved activations at their peak: without checkpointing they grow with every layer; with it each
    layer keeps only its input, plus one layer's activations during its recompute. 8 layers: ~4x less. ~2 s."""
    def peak(layers, recompute):
        model = lora_model(tiny_causal_lm(layers=layers, hidden=64))
        rec = SavedPeak()
        with rec:
            compute_fisher(model, texts(4), TOK, max_length=64, micro_batch=4, gradient_checkpointing=recompute)
        return rec.peak
    plain, ckpt = peak(8, False), peak(8, True)
    assert ckpt * 3 < plain, (ckpt, plain)
    assert peak(8, True) - peak(2, True) < (plain - peak(2, False)) / 4   # per extra layer: much less kept


def test_cli_precision_and_checkpointing(tmp_path):
    """`e2wm fisher --precision bf16 --gradient-checkpointing`: recorded in the metadata, as is how the model
    was loaded (one process: whole). ~2 s."""
    args = ["--model", "tiny", "--max-samples", "4", "--max-length", "32"]
    assert main_fisher([*args, "--out", str(tmp_path / "a"), "--precision", "bf16", "--gradient-checkpointing"]) == 0
    got, meta = load_fisher(tmp_path / "a")
    assert (meta["precision"], meta["gradient_checkpointing"], meta["load"]) == ("bf16", "true", "full")
    assert main_fisher([*args, "--out", str(tmp_path / "b")]) == 0
    ref, meta = load_fisher(tmp_path / "b")
    assert (meta["precision"], meta["gradient_checkpointing"]) == ("fp32", "false")
    assert frobenius(got, ref) <= 2e-2


def test_pipeline_section_takes_the_fields():
    from e2wm.config import build
    from e2wm.train.fisher_config import FisherConfig
    cfg = build(FisherConfig, {"precision": "bf16", "gradient_checkpointing": True}, "fisher")
    assert (cfg.precision, cfg.gradient_checkpointing) == ("bf16", True)
    with pytest.raises(E2WMError, match="precision"):
        build(FisherConfig, {"precision": "fp16"}, "fisher")


# ---------------------------------------------------------------- 2 ranks (torchrun, gloo)

@pytest.fixture(scope="module")
def scale_runs(tmp_path_factory, tiny_model_dir):
    """One torchrun launch (2 ranks) of tests/train/fisher_scale_worker.py on the tiny model's directory."""
    root = tmp_path_factory.mktemp("fisher-scale")
    cmd = edist.torchrun_cmd(2, edist.free_port(), str(Path(__file__).with_name("fisher_scale_worker.py")),
                             [str(root), str(tiny_model_dir), "--corpus", "builtin:pydoc", "--max-samples", "9",
                              "--max-length", "40", "--micro-batch", "2"])
    p = subprocess.run(cmd, env=edist.cpu_env({"PYTHONPATH": str(Path(__file__).parents[2])}), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    ref = {}
    for dtype, modules in ((torch.float32, "lora-targets"), (torch.bfloat16, "lora-targets"), (torch.float32, "all")):
        ref[dtype, modules], _ = compute_fisher(lora_model(tiny_causal_lm().to(dtype)), load_texts("builtin:pydoc", 9),
                                                TOK, max_length=40, micro_batch=2, modules=modules)
    return root, ref


@pytest.mark.slow
def test_zero3_loads_partitioned_and_matches_one_process(scale_runs):
    """ZeRO-3 of a model directory: each rank loads only its partitions (metadata `load`), F as one process's.
    The whole worker (4 runs, 2 ranks): ~25 s."""
    root, ref = scale_runs
    got, meta = load_fisher(root / "z3")
    how = (meta["load"], meta["zero_stage"], meta["world_size"], meta["precision"])
    assert how == ("partitioned", "3", "2", "fp32")
    assert frobenius(got, ref[torch.float32, "lora-targets"]) <= 1e-5


@pytest.mark.slow
def test_zero3_bf16_with_checkpointing(scale_runs):
    """bf16 + checkpointing at ZeRO-3, loaded partitioned: as one process's bf16 F up to bf16 rounding of
    other batch shapes (measured 1.5e-3), within bf16's error of the fp32 F (measured 9.2e-3)."""
    root, ref = scale_runs
    got, meta = load_fisher(root / "z3-bf16-gc")
    assert (meta["load"], meta["precision"], meta["gradient_checkpointing"]) == ("partitioned", "bf16", "true")
    assert frobenius(got, ref[torch.bfloat16, "lora-targets"]) <= 5e-3
    assert 1e-4 < frobenius(got, ref[torch.float32, "lora-targets"]) <= 2e-2


@pytest.mark.slow
def test_zero3_checkpointing_over_every_weight(scale_runs):
    """The per-sample loop path (embeddings, norms) recomputed under ZeRO-3: F as one process's."""
    root, ref = scale_runs
    got, meta = load_fisher(root / "z3-all-gc")
    assert meta["modules"] == "all" and meta["gradient_checkpointing"] == "true"
    assert frobenius(got, ref[torch.float32, "all"]) <= 1e-5


@pytest.mark.slow
def test_zero2_bf16_loads_whole(scale_runs):
    root, ref = scale_runs
    got, meta = load_fisher(root / "z2-bf16")
    assert (meta["load"], meta["precision"], meta["zero_stage"]) == ("full", "bf16", "2")
    assert 1e-4 < frobenius(got, ref[torch.float32, "lora-targets"]) <= 2e-2
