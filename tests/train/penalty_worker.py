"""2-rank worker for tests/train/test_regularizers.py: the ewc_lora penalty under DeepSpeed ZeRO-0/2/3.

Run with `python -m torch.distributed.run --nproc_per_node 2 penalty_worker.py OUT.pt FISHER.safetensors`. For
each stage and each mode ("penalty": the penalty alone; "ce+penalty": the same plus the CE loss of one batch
that both ranks share) it records the penalty value and the full A/B gradients
(`deepspeed.utils.safe_get_full_grad`); rank 0 saves {(stage, mode): {"penalty", "loss", "grads"}} to OUT.pt.
The Fisher is read from the file as training reads it: whole at ZeRO-0/2 (autograd penalty), each rank's
partition at ZeRO-3 (explicit gradients after the backward).
"""
import sys

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.utils import safe_get_full_grad
from train_helpers import make_case   # this script's neighbour

from e2wm.train.fisher_io import read_for_params
from e2wm.train.model import base_name, lora_pairs
from e2wm.train.regularizers import Zero3EWCLoRA, make_regularizer


def run(stage: int, mode: str, fisher_file: str) -> dict:
    model, _, ids = make_case()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    cfg = {"train_micro_batch_size_per_gpu": ids.shape[0], "gradient_accumulation_steps": 1,
           "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    named = {base_name(n): p for n, p in engine.module.named_parameters() if "lora_" not in n}
    fisher = read_for_params(fisher_file, {n: named[n] for n, *_ in lora_pairs(engine.module)}, engine.device)
    ce = engine(input_ids=ids, labels=ids).loss
    if stage == 3:
        reg = Zero3EWCLoRA(engine.module, fisher, lam=0.5)
        loss = ce if mode == "ce+penalty" else ce * 0.0
        engine.backward(loss)
        penalty = reg.add_grads(engine)
        loss = loss + penalty if mode == "ce+penalty" else penalty
    else:
        penalty = make_regularizer("ewc_lora", engine.module, fisher=fisher, lam=0.5)()
        loss = ce + penalty if mode == "ce+penalty" else penalty
        engine.backward(loss)
    grads = {name: (safe_get_full_grad(A).clone(), safe_get_full_grad(B).clone())
             for name, A, B, _ in lora_pairs(engine.module)}
    out = {"penalty": float(penalty.detach()), "loss": float(loss.detach()), "grads": grads}
    engine.destroy()
    return out


def main() -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    results = {(stage, mode): run(stage, mode, sys.argv[2])
               for stage in (0, 2, 3) for mode in ("penalty", "ce+penalty")}
    if dist.get_rank() == 0:
        torch.save(results, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    main()
    exit_now(0)
