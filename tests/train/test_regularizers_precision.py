"""ewc_lora with replicated parameters (one process, ZeRO-0/1/2) under bf16 training: the penalty is summed
in fp32, not in the weights' bf16."""
import copy

import torch
from train_helpers import make_case

from e2wm.train.model import lora_pairs
from e2wm.train.regularizers import make_regularizer


def test_bf16_lora_penalty_is_computed_in_fp32():
    """A and B in bf16 (as DeepSpeed's bf16 engine holds them); the same values in fp32 give the exact
    penalty. Summed in bf16 (what the penalty did before) it is off by 3.8e-3 relative here; in fp32 by
    rounding only (~1e-7). Gradients still reach the bf16 A and B, in bf16. < 1 s."""
    model, fisher, _ = make_case()
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    exact = copy.deepcopy(bf16).to(torch.float32)   # bf16 values, held exactly in fp32
    want = make_regularizer("ewc_lora", exact, fisher=fisher, lam=0.7)()
    got = make_regularizer("ewc_lora", bf16, fisher=fisher, lam=0.7)()
    assert got.dtype == torch.float32
    assert abs(got.item() / want.item() - 1) <= 1e-6, (got.item(), want.item())
    got.backward()
    assert all(A.grad is not None and A.grad.dtype == torch.bfloat16 for _, A, _, _ in lora_pairs(bf16))
