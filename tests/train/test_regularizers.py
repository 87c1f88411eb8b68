"""Regularisers: ewc_lora value/gradients by hand, ZeRO-0/2/3 parity (2 ranks), ewc, kl, none."""
import subprocess
from pathlib import Path

import pytest
import torch

from e2wm.errors import E2WMError
from e2wm.train.dist import cpu_env, free_port, torchrun_cmd
from e2wm.train.model import add_lora, lora_pairs, tiny_causal_lm
from e2wm.train.regularizers import KINDS, make_regularizer

REL = 1e-5


def make_case(b_scale: float = 0.05):
    """The tiny LoRA model with a non-zero B, a random positive Fisher and one batch; fully seeded."""
    model = add_lora(tiny_causal_lm(seed=0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, _, B, _ in lora_pairs(model):
            B.copy_(torch.randn(B.shape, generator=g) * b_scale)
    named = dict(model.named_parameters())
    fisher = {name: torch.rand(named["base_model.model." + name.replace(".weight", ".base_layer.weight")].shape,
                               generator=g) for name, *_ in lora_pairs(model)}
    ids = torch.randint(3, 128, (2, 16), generator=g)
    return model, fisher, ids


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
    base = float(reg())
    assert base > 0
    values = []
    for c in (0.5, 1.0, 2.0, 4.0):
        with torch.no_grad():
            for _, _, B, _ in lora_pairs(model):
                B.mul_(c)
            values.append(float(reg()))
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
    assert float(pen) == pytest.approx(lam * expect, rel=1e-6)


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
            up = float(reg())
            p[idx] -= 2 * eps
            down = float(reg())
            p[idx] += eps
        assert (up - down) / (2 * eps) == pytest.approx(float(p.grad[idx]), rel=1e-6)


@pytest.mark.parametrize("world", [2, 3])
def test_partitioned_fisher_sums_to_full(world):
    """The ZeRO-3 form (flat per-rank partitions, last one zero-padded) adds up to the full penalty."""
    model, fisher, _ = make_case()
    full = make_regularizer("ewc_lora", model, fisher=fisher)
    ref_val = float(full())
    full().backward()
    ref = {n: (A.grad.clone(), B.grad.clone()) for n, A, B, _ in lora_pairs(model)}
    model.zero_grad()
    total = 0.0
    for rank in range(world):
        parts = {}
        for n, F in fisher.items():
            pn = -(-F.numel() // world)
            flat = torch.cat([F.reshape(-1), F.new_zeros(pn * world - F.numel())])
            parts[n] = flat[rank * pn:(rank + 1) * pn]
        local = make_regularizer("ewc_lora", model, fisher=parts, world=(rank, world)).local()
        local.backward()
        total += float(local)
    assert total == pytest.approx(ref_val, rel=1e-6)
    for n, A, B, _ in lora_pairs(model):
        assert rel_err(A.grad, ref[n][0]) < REL and rel_err(B.grad, ref[n][1]) < REL


def test_ewc_zero_at_reference_and_positive_after_move():
    model = tiny_causal_lm(seed=0)
    names = ["model.layers.0.self_attn.q_proj.weight", "lm_head.weight"]
    params = dict(model.named_parameters())
    fisher = {n: torch.rand(params[n].shape) for n in names}
    reg = make_regularizer("ewc", model, fisher=fisher, lam=2.0)
    assert float(reg()) == 0.0
    with torch.no_grad():
        params[names[0]].add_(0.1)
    assert float(reg()) == pytest.approx(2.0 * 0.01 * float(fisher[names[0]].sum()), rel=1e-4)
    reg().backward()
    assert params[names[0]].grad.abs().sum() > 0


def test_kl_zero_at_init_positive_after_perturbing_b():
    model = add_lora(tiny_causal_lm(seed=0))
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    reg = make_regularizer("kl", model, lam=1.0)
    assert abs(float(reg({"input_ids": ids}))) < 1e-7
    with torch.no_grad():
        for _, _, B, _ in lora_pairs(model):
            B.copy_(torch.randn(B.shape) * 0.5)
    kl = reg(ids)
    assert float(kl) > 1e-4
    kl.backward()
    assert all(B.grad is not None and B.grad.abs().sum() > 0 for _, _, B, _ in lora_pairs(model))


def test_none_and_unknown_kind():
    model = tiny_causal_lm(seed=0)
    assert float(make_regularizer("none", model)()) == 0.0
    with pytest.raises(E2WMError, match="ewc_lora, ewc, kl, none"):
        make_regularizer("l2", model)
    with pytest.raises(E2WMError, match="fisher"):
        make_regularizer("ewc_lora", model)
    assert KINDS == ("ewc_lora", "ewc", "kl", "none")


@pytest.mark.slow
def test_ewc_lora_zero_stages_match_single_process(tmp_path):
    """Penalty and A/B gradients under ZeRO-0/2/3 (2 gloo ranks) equal the single-process reference."""
    pytest.importorskip("deepspeed")
    root = Path(__file__).resolve().parents[2]
    env = cpu_env({"PYTHONPATH": str(root)})
    out = tmp_path / "penalty.pt"
    cmd = torchrun_cmd(2, free_port(), str(Path(__file__).with_name("penalty_worker.py")), [str(out)])
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


def test_bench_smoke():
    from e2wm.bench.train import run_ewc, run_fisher
    ewc = run_ewc(steps=4, hidden=32, layers=1, vocab=128, seq=16, batch=2, warmup=1)
    fisher = run_fisher(samples=4, hidden=32, layers=1, vocab=128, seq=16, micro_batch=2)
    assert ewc["bench"] == "ewc" and fisher["bench"] == "fisher"
    assert ewc["ratio"] > 0 and fisher["ratio"] > 0
