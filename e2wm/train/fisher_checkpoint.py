"""Checkpoints of a Fisher run: each rank's partial sums under OUT/checkpoint, committed by rank 0's
state.json once every rank has written its file. Positions count samples, so a run resumed with another
micro-batch continues exactly where the last one stopped; a run with other arguments is refused."""
from __future__ import annotations

import json
import math
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import loads, read_text, write_json
from e2wm.train.fisher_io import all_finite, load_fisher, save_fisher, weight_sums


def metadata(model_name: str, texts, modules: str, max_length: int, zero_stage, world: int, method: str,
             precision: str = "fp32") -> dict:
    from e2wm.train.corpus import corpus_hash
    return {"model": model_name, "corpus_sha256": corpus_hash(texts), "modules": modules,
            "max_length": max_length, "zero_stage": zero_stage, "world_size": world, "method": method,
            "precision": precision}


def fingerprint(meta: dict, params: dict) -> str:
    """Everything that changes F: model, corpus (after --max-samples), modules, max length, ZeRO stage,
    world size, precision, and which weights with which values (LoRA targets, the model's actual weights).
    The micro-batch, the checkpoint interval, gradient checkpointing and how the model was loaded are not
    in it: they do not change F."""
    return json.dumps({**meta, "weight_sums": weight_sums(params)}, sort_keys=True)


class Checkpoints:
    """This rank's checkpoints of a run with `fingerprint`, every `every` samples over all ranks."""

    def __init__(self, out_dir, every: int, rank: int, world: int, fingerprint: str, barrier=lambda: None):
        self.dir, self.rank, self.world = Path(out_dir) / "checkpoint", rank, world
        self.every = max(1, math.ceil(every / world))   # in this rank's positions
        self.fingerprint, self.barrier = fingerprint, barrier

    def due(self, before: int, pos: int, length: int) -> bool:
        return pos // self.every > before // self.every and pos < length

    def load(self, device, like: dict):
        """(position, samples, tokens, sums) of the last committed checkpoint, or None. `like` holds this
        run's sums: a checkpoint whose names or sizes differ is refused, as is any unreadable part."""
        d = self.dir
        if not (d / "state.json").exists():
            return None
        try:
            state = loads(read_text(d / "state.json", "Fisher checkpoint state"), str(d / "state.json"))
        except E2WMError as e:
            raise E2WMError(f"unreadable Fisher checkpoint: {e}; remove {d} to start over") from None
        if not isinstance(state, dict) or not isinstance(state.get("position"), int) or state["position"] < 0 \
                or not isinstance(state.get("fingerprint"), str):
            raise E2WMError(f"{d}: unreadable Fisher checkpoint (state.json is not a checkpoint state); "
                            f"remove it to start over")
        if state["fingerprint"] != self.fingerprint:
            raise E2WMError(f"{d}: checkpoint is from different arguments; remove it or change --out")
        try:
            sums, meta = load_fisher(d / f"rank{self.rank:03d}-pos{state['position']:09d}.safetensors", "--out")
            samples, tokens = int(meta["samples"]), int(meta["tokens"])
        except (E2WMError, KeyError, ValueError) as e:
            raise E2WMError(f"{d}: unreadable Fisher checkpoint ({e}); remove it to start over") from None
        if set(sums) != set(like) or any(sums[k].shape != like[k].shape for k in like) or all_finite(sums):
            raise E2WMError(f"{d}: unreadable Fisher checkpoint (its tensors do not fit this run or are not "
                            f"finite); remove it to start over")
        return state["position"], samples, tokens, {k: v.to(device) for k, v in sums.items()}

    def save(self, position: int, samples: int, tokens: int, sums: dict) -> None:
        """Each rank writes its partial sums; after a barrier rank 0 commits state.json, then old files go."""
        self.dir.mkdir(parents=True, exist_ok=True)
        mine = f"rank{self.rank:03d}-pos{position:09d}.safetensors"
        save_fisher(self.dir, sums, {"samples": samples, "tokens": tokens, "position": position}, mine)
        self.barrier()  # a position is committed only once every rank has its file
        if self.rank == 0:
            write_json(self.dir / "state.json", {"position": position, "world": self.world,
                                                 "fingerprint": self.fingerprint})
        self.barrier()
        for f in self.dir.glob(f"rank{self.rank:03d}-*.safetensors"):
            if f.name != mine:
                f.unlink()
