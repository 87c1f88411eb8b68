"""2-rank worker for tests/train/test_regularizers.py: the ewc_lora penalty under DeepSpeed ZeRO-0/2/3.

Run with `python -m torch.distributed.run --nproc_per_node 2 penalty_worker.py OUT.pt`. For each stage
and each mode ("penalty": `engine.backward(penalty)`; "ce+penalty": the same plus the CE loss of one
batch that both ranks share) it records the penalty value and the full A/B gradients
(`deepspeed.utils.safe_get_full_grad`); rank 0 saves {(stage, mode): {"penalty", "grads"}} to OUT.pt.
ZeRO-0/2 pass full Fisher tensors; ZeRO-3 passes each rank's flat partition with world=(rank, size).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.train.test_regularizers import make_case  # noqa: E402

import deepspeed  # noqa: E402
import torch.distributed as dist  # noqa: E402
from deepspeed.utils import safe_get_full_grad  # noqa: E402

from e2wm.train.model import lora_pairs  # noqa: E402
from e2wm.train.regularizers import make_regularizer  # noqa: E402


def partition(F: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    pn = -(-F.numel() // world)
    flat = torch.cat([F.reshape(-1), F.new_zeros(pn * world - F.numel())])
    return flat[rank * pn:(rank + 1) * pn].clone()


def run(stage: int, mode: str, rank: int, world: int) -> dict:
    model, fisher, ids = make_case()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    cfg = {"train_micro_batch_size_per_gpu": ids.shape[0], "gradient_accumulation_steps": 1,
           "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True,
           "zero_force_ds_cpu_optimizer": False}
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    if stage == 3:
        fisher_arg, world_arg = {n: partition(F, rank, world) for n, F in fisher.items()}, (rank, world)
        for (name, A, B, _), F in zip(lora_pairs(engine.module), fisher_arg.values()):
            assert F.numel() == dict(engine.module.named_parameters())[
                "base_model.model." + name.replace(".weight", ".base_layer.weight")].ds_tensor.numel()
    else:
        fisher_arg, world_arg = fisher, None
    reg = make_regularizer("ewc_lora", engine.module, fisher=fisher_arg, lam=0.5, world=world_arg)
    loss = penalty = reg()
    if mode == "ce+penalty":
        loss = engine(input_ids=ids, labels=ids).loss + penalty
    engine.backward(loss)
    grads = {name: (safe_get_full_grad(A).clone(), safe_get_full_grad(B).clone())
             for name, A, B, _ in lora_pairs(engine.module)}
    out = {"penalty": float(penalty.detach()), "loss": float(loss.detach()), "grads": grads}
    engine.destroy()
    return out


def main() -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {(stage, mode): run(stage, mode, rank, world)
               for stage in (0, 2, 3) for mode in ("penalty", "ce+penalty")}
    if rank == 0:
        torch.save(results, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
