"""Regularisers: ewc_lora value/gradients by hand, ZeRO-0/2/3 parity (2 ranks), ewc, kl, none."""
import subprocess
from pathlib import Path

import pytest
import torch
from train_helpers import make_case

from e2wm.errors import E2WMError
from e2wm.train.dist import cpu_env, free_port, torchrun_cmd
from e2wm.train.model import add_lora, lora_pairs, tiny_causal_lm
from e2wm.train.regularizers import KINDS, lora_rows_penalty, make_regularizer

REL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def reference(model, fisher, lam, ids=None):
    """Single-process penalty (and loss) with the A/B gradients from autograd."""
    model.zero_grad()
    penalty = make_regularizer("ewc_lora", model, fisher=fisher, lam=lam)()
    loss = penalty if ids is None else model(input_ids=ids, labels=ids).loss + penalty
    loss.backward()
    return float(penalty.detach()), float(loss.detach()), {n: (A.grad.clone(), B.grad.clone()) for n, A, B, _ in lora_pairs(model)}


def test_zero_at_init_and_quadratic_in_ba():
    model = add_lora(tiny_causal_lm(seed=0))
    fisher = {n: torch.rand(B.shape[0], A.shape[1]) for n, A, B, _ in lora_pairs(model)}
    reg = make_regularizer("ewc_lora", model, fisher=fisher)
    assert float(reg().detach()) == 0.0                         # B = 0 at initialisation
    with torch.no_grad():
        for _, _, B, _ in lora_pairs(model):
            B.copy_(torch.randn(B.shape) * 0.01)
    base = float(reg().detach())
    assert base > 0
    values = []
    for c in (0.5, 1.0, 2.0, 4.0):
        with torch.no_grad():
            for _, _, B, _ in lora_pairs(model):
                B.mul_(c)
            values.append(float(reg().detach()))
            for _, _, B, _ in lora_pairs(model):
                B.div_(c)
    assert values == sorted(values)
    for c, v in zip((0.5, 1.0, 2.0, 4.0), values):
        assert v == pytest.approx(c * c * base, rel=1e-5)


def test_value_and_gradients_match_hand_formula():
    model, fisher, _ = make_case()
    lam = 0.7
    pen = make_regularizer("ewc_lora", model, fisher=fisher, lam=lam)()
    pen.backward()
    expect = 0.0
    for name, A, B, s in lora_pairs(model):
        assert s == 4.0                                          # alpha 32 / r 8
        F, dw = fisher[name], s * (B.detach() @ A.detach())
        expect += float((F * dw ** 2).sum())
        g = 2 * lam * s * F * dw                                 # dP/dΔW, ΔW = s·B·A
        assert rel_err(A.grad, B.detach().t() @ g) < REL
        assert rel_err(B.grad, g @ A.detach().t()) < REL
    assert float(pen.detach()) == pytest.approx(lam * expect, rel=1e-6)


def test_gradients_match_finite_differences():
    model, fisher, _ = make_case()
    model.double()
    fisher = {k: v.double() for k, v in fisher.items()}
    reg = make_regularizer("ewc_lora", model, fisher=fisher)
    reg().backward()
    _, A, B, _ = lora_pairs(model)[0]
    eps = 1e-6
    for p, idx in ((A, (3, 5)), (B, (7, 2)), (A, (0, 31))):
        with torch.no_grad():
            p[idx] += eps
            up = float(reg().detach())
            p[idx] -= 2 * eps
            down = float(reg().detach())
            p[idx] += eps
        assert (up - down) / (2 * eps) == pytest.approx(float(p.grad[idx]), rel=1e-6)


@pytest.mark.parametrize("world", [2, 3])
def test_partitioned_rows_sum_to_full(world):
    """Each rank's rows of ΔW (flat partitions as DeepSpeed pads them) add up to the full penalty and gradients."""
    model, fisher, _ = make_case()
    full = make_regularizer("ewc_lora", model, fisher=fisher)
    ref_val = float(full().detach())
    full().backward()
    ref = {n: (A.grad.clone(), B.grad.clone()) for n, A, B, _ in lora_pairs(model)}
    model.zero_grad()
    total = 0.0
    for rank in range(world):
        for n, A, B, s in lora_pairs(model):
            F = fisher[n].reshape(-1)
            pn = -(-F.numel() // world)
            start, end = min(rank * pn, F.numel()), min((rank + 1) * pn, F.numel())
            local = lora_rows_penalty(A, B, s, F[start:end], start, end)
            local.backward()
            total += float(local.detach())
    assert total == pytest.approx(ref_val, rel=1e-6)
    for n, A, B, _ in lora_pairs(model):
        assert rel_err(A.grad, ref[n][0]) < REL and rel_err(B.grad, ref[n][1]) < REL


def test_fan_in_fan_out_weights_take_the_transposed_product():
    """GPT-2 stores its Conv1D weights (in, out): the penalty must pair F with (B·A)ᵀ."""
    g = torch.Generator().manual_seed(0)
    A, B, F = torch.randn(4, 6, generator=g), torch.randn(5, 4, generator=g), torch.rand(6, 5, generator=g)
    expect = float((F * (2.0 * (B @ A)).t() ** 2).sum())
    got = lora_rows_penalty(A, B, 2.0, F.reshape(-1), 0, F.numel(), transposed=True)
    assert float(got) == pytest.approx(expect, rel=1e-6)
    part = sum(float(lora_rows_penalty(A, B, 2.0, F.reshape(-1)[a:b], a, b, transposed=True))
               for a, b in ((0, 7), (7, 19), (19, 30)))
    assert part == pytest.approx(expect, rel=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
def test_blocks_of_rows_give_the_whole_product(monkeypatch, transposed):
    """ΔW is formed a few rows at a time (a block of 7 elements here: partial rows at both ends of a range,
    blocks that straddle a partition's edge): the value and both gradients as the hand formula's."""
    from e2wm.train import regularizers as R
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    F = torch.rand(6, 5, generator=g, dtype=torch.float64) if transposed else torch.rand(5, 6, generator=g,
                                                                                            dtype=torch.float64)
    monkeypatch.setattr(R, "ROW_BLOCK", 7)
    dw = 2.0 * ((B @ A).t() if transposed else B @ A)
    for start, end in ((0, 30), (4, 23), (11, 12), (9, 9)):
        mask = torch.zeros(30, dtype=torch.float64)
        mask[start:end] = 1
        Fm = (F.reshape(-1) * mask).view_as(F)
        G = 2 * 2.0 * Fm * dw                                     # dP/d(B·A) in W's layout, times s
        G = G.t() if transposed else G
        value, ga, gb = R.rows_penalty_grads(A, B, 2.0, F.reshape(-1)[start:end], start, end, transposed)
        assert float(value) == pytest.approx(float((Fm * dw ** 2).sum()), rel=1e-12, abs=1e-300)
        assert torch.allclose(ga, B.t() @ G, rtol=1e-12, atol=1e-15)
        assert torch.allclose(gb, G @ A.t(), rtol=1e-12, atol=1e-15)


def test_the_replicated_penalty_keeps_no_product_for_its_backward():
    """Saved for the backward: the gradients in A and B (fp32), never ΔW or F ⊙ ΔW (out × in each)."""
    model, fisher, _ = make_case()
    model.to(torch.bfloat16)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        pen = make_regularizer("ewc_lora", model, fisher=fisher)()
    pen.backward()
    lora = sum(A.numel() + B.numel() for _, A, B, _ in lora_pairs(model))
    assert 0 < sum(saved) <= lora
    assert all(A.grad.dtype == B.grad.dtype == torch.bfloat16 for _, A, B, _ in lora_pairs(model))


def test_ewc_zero_at_reference_and_positive_after_move():
    model = tiny_causal_lm(seed=0)
    names = ["model.layers.0.self_attn.q_proj.weight", "lm_head.weight"]
    params = dict(model.named_parameters())
    fisher = {n: torch.rand(params[n].shape) for n in names}
    reg = make_regularizer("ewc", model, fisher=fisher, lam=2.0)
    assert float(reg().detach()) == 0.0
    with torch.no_grad():
        params[names[0]].add_(0.1)
    assert float(reg().detach()) == pytest.approx(2.0 * 0.01 * float(fisher[names[0]].sum()), rel=1e-4)
    reg().backward()
    assert params[names[0]].grad.abs().sum() > 0


def test_kl_zero_at_init_positive_after_perturbing_b():
    model = add_lora(tiny_causal_lm(seed=0))
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    reg = make_regularizer("kl", model, lam=1.0)
    assert abs(float(reg({"input_ids": ids}).detach())) < 1e-7
    with torch.no_grad():
        for _, _, B, _ in lora_pairs(model):
            B.copy_(torch.randn(B.shape) * 0.5)
    kl = reg(ids)
    assert float(kl.detach()) > 1e-4
    kl.backward()
    assert all(B.grad is not None and B.grad.abs().sum() > 0 for _, _, B, _ in lora_pairs(model))


def test_none_and_unknown_kind():
    model = tiny_causal_lm(seed=0)
    assert float(make_regularizer("none", model)().detach()) == 0.0
    with pytest.raises(E2WMError, match="ewc_lora, ewc, kl, none"):
        make_regularizer("l2", model)
    with pytest.raises(E2WMError, match="fisher"):
        make_regularizer("ewc_lora", model)
    assert KINDS == ("ewc_lora", "ewc", "kl", "none")


@pytest.mark.slow
def test_ewc_lora_zero_stages_match_single_process(tmp_path):
    """Penalty and A/B gradients under ZeRO-0/2/3 (2 gloo ranks, the Fisher read from a file as training
    reads it: whole, or each rank's partition) equal the single-process reference."""
    from e2wm.train.fisher_io import save_fisher
    root = Path(__file__).resolve().parents[2]
    env = cpu_env({"PYTHONPATH": str(root)})
    out = tmp_path / "penalty.pt"
    _, fisher, _ = make_case()
    fisher_file = save_fisher(tmp_path, fisher, {"model": "tiny"})
    cmd = torchrun_cmd(2, free_port(), str(Path(__file__).with_name("penalty_worker.py")),
                       [str(out), str(fisher_file)])
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = torch.load(out)
    for mode in ("penalty", "ce+penalty"):
        model, fisher, ids = make_case()
        ref_pen, ref_loss, ref_grads = reference(model, fisher, 0.5, None if mode == "penalty" else ids)
        assert ref_pen > 0
        for stage in (0, 2, 3):
            got = results[(stage, mode)]
            assert got["penalty"] == pytest.approx(ref_pen, rel=REL), (stage, mode)
            assert got["loss"] == pytest.approx(ref_loss, rel=REL), (stage, mode)
            for name, (ga, gb) in ref_grads.items():
                assert rel_err(got["grads"][name][0], ga) <= REL, (stage, mode, name, "A")
                assert rel_err(got["grads"][name][1], gb) <= REL, (stage, mode, name, "B")


@pytest.mark.slow
def test_bench_smoke():
    from e2wm.bench.regularizers import run_ewc, run_fisher
    ewc = run_ewc(steps=4, hidden=32, layers=1, vocab=128, seq=16, batch=2, warmup=1)
    fisher = run_fisher(samples=4, hidden=32, layers=1, seq=16, micro_batch=2, repeats=1)
    assert ewc["bench"] == "ewc" and fisher["bench"] == "fisher"
    assert ewc["ratio"] > 0 and fisher["ratio"] > 0 and fisher["ratio_loop"] > 0
    assert set(fisher["peak_mib"]) == {"plain", "batch", "loop"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["kl", "ewc"])
def test_kinds_at_zero3_match_zero2(zero3_jobs, kind):
    """Each regulariser runs at ZeRO-3 on 2 ranks, with the same losses and penalties as at ZeRO-2 (ewc: full
    fine-tuning with explicit gradients at ZeRO-3, autograd at ZeRO-2; kl: a general-text batch split over ranks)."""
    from train_helpers import metrics
    a, b = metrics(zero3_jobs[f"{kind}_z3"]), metrics(zero3_jobs[f"{kind}_z2"])
    assert len(a) == len(b) == 4 and a[-1]["penalty"] > 0
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= 1e-5
        assert x["penalty"] == pytest.approx(y["penalty"], rel=1e-4, abs=1e-10)
