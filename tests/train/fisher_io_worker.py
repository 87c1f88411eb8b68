"""Run by tests under torchrun (3 ranks): the tiny LoRA model partitioned by ZeRO-3, whose weights' numel
does not divide by 3, so the last rank's partitions end in padding; the padding is filled with garbage (DeepSpeed
leaves it uninitialised), then each rank fingerprints the weights and reads a Fisher of the same model.

usage: fisher_io_worker.py ROOT FISHER; writes ROOT/rank{r}.json: {"padded": [names], "sums": {name: Σ|W|},
"read": "ok" or the error}.
"""
import json
import sys

import torch

from e2wm.errors import E2WMError
from e2wm.train import dist as edist
from e2wm.train.ds_config import fisher_config
from e2wm.train.fisher import select_base_params
from e2wm.train.fisher_io import read_for_params, weight_sums
from e2wm.train.fisher_run import _engine, lora_model
from e2wm.train.model import tiny_causal_lm

GARBAGE = 1e6


def main() -> int:
    root, fisher = sys.argv[1], sys.argv[2]
    with edist.process_group() as (rank, _):
        engine = _engine(lora_model(tiny_causal_lm()), fisher_config(3, 1))
        try:
            params = select_base_params(engine.module, "all")
            padded = []
            for name, p in params.items():
                pn = p.ds_tensor.numel()
                real = max(0, min(pn, p.ds_numel - rank * pn))
                if real < pn:
                    with torch.no_grad():
                        p.ds_tensor.view(-1)[real:] = GARBAGE
                    padded.append(name)
            sums = weight_sums(params)
            try:
                read_for_params(fisher, params, engine.device)
                read = "ok"
            except E2WMError as e:
                read = str(e)
            with open(f"{root}/rank{rank}.json", "w") as f:
                json.dump({"padded": padded, "sums": sums, "read": read}, f)
        finally:
            engine.destroy()
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    exit_now(main())
