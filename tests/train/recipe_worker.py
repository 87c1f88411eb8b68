"""Run by tests under torchrun: several training recipes in one process group.

usage: recipe_worker.py SPEC.json, where SPEC = {"jobs": [{"name", "config", "probe"?}]}. Each job trains and
exports; a job with a "probe" (token ids) also saves the engine's logits of it to OUT/probe_logits.pt.
"""
import json
import sys
from pathlib import Path

import torch

from e2wm.config import build
from e2wm.train import dist as edist
from e2wm.train.config import TrainConfig
from e2wm.train.recipe import Recipe


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    with edist.process_group() as (rank, _):  # one group for all jobs: re-initialising per job costs seconds
        for job in spec["jobs"]:
            recipe = Recipe(build(TrainConfig, job["config"], job["name"]))
            recipe.setup()
            recipe.train()
            recipe.export()
            if "probe" in job:
                with torch.no_grad():   # every rank runs the forward: ZeRO-3 gathers weights collectively
                    logits = recipe.engine(input_ids=torch.tensor(job["probe"], device=recipe.device)).logits
                if rank == 0:
                    torch.save(logits.float().cpu(), Path(job["config"]["out"]) / "probe_logits.pt")
            recipe.cleanup()
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now
    exit_now(main())
