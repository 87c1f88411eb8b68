"""Training rows -> token ids with answer weights, global batches, padded micro-batches.

Text is E2WM's `f"{input} {ref}\\n"`, tokenised by the shared rule (`e2wm.train.tokens`): tokens
that end after the prompt's last character are answer tokens and carry the row's task weight, all
others weight 0. A row longer than `max_length` keeps its answer and loses the start of its prompt
(`prompt_start`), or, as E2WM's `truncation=True` did, loses its end, the answer first (`end`).

Batches are a pure function of (seed, step): epoch e permutes the rows with (seed, e). `shuffle`
(E2WM's sampler) cuts that permutation into consecutive global batches. `length_grouped` cuts it into
groups of `group_batches` global batches, sorts each group by length (less padding) and shuffles the
order of the batches; since the loss is normalised by each batch's answer tokens, this gives the
tokens of short-answer tasks more weight than E2WM does. Nothing about the sampler needs saving but
the step, and the global batch does not depend on the world size; within a step its rows are sorted
by length and dealt to (micro-step, rank) slots, so ranks that wait for each other hold rows of
similar length (this order does not change the update).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from e2wm.errors import E2WMError
from e2wm.files import read_jsonl
from e2wm.train.corpus import load_saved_dataset, saved_dataset_errors
from e2wm.train.tokens import encode, encode_pairs


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    answer_start: int          # ids[answer_start:] are the answer tokens
    weight: float
    task: int                  # index into the dataset's task names

    @property
    def answer_tokens(self) -> int:
        return len(self.ids) - self.answer_start if self.weight > 0 else 0


# ---------------------------------------------------------------- reading rows

def _check_row(row, where: str, default_task: str) -> dict:
    if not isinstance(row, dict):
        raise E2WMError(f"{where}: expected an object with \"input\" and \"ref\"")
    for key in ("input", "ref"):
        if not isinstance(row.get(key), str):
            raise E2WMError(f"{where}: row lacks a string \"{key}\"")
    w = row.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise E2WMError(f"{where}: \"weight\" must be a finite number >= 0, got {w!r}")
    return {"task": str(row.get("task") or default_task), "input": row["input"], "ref": row["ref"],
            "weight": float(w)}


def _jsonl_rows(path: Path) -> list[dict]:
    return [_check_row(row, f"{path}:{i}", path.stem) for i, row in read_jsonl(path)]


def _datasets_rows(path: Path) -> list[dict]:
    from datasets import DatasetDict

    ds = load_saved_dataset(path, "data.path")
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise E2WMError(f"data.path: {path}: the DatasetDict has no \"train\" split ({', '.join(ds)})")
        ds = ds["train"]
    with saved_dataset_errors(path, "data.path"):
        rows = ds.to_list()
    return [_check_row(r, f"{path} row {i}", "default") for i, r in enumerate(rows)]


def read_rows(spec: str) -> list[dict]:
    """{task, input, ref, weight} rows from a build-data output, a saved dataset, JSONL file(s)."""
    p = Path(spec)
    if p.is_dir() and (p / "hf").is_dir():
        rows = _datasets_rows(p / "hf")
    elif p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        rows = _datasets_rows(p)
    elif p.is_dir():
        files = sorted(p.glob("*.jsonl"))
        if not files:
            raise E2WMError(f"data.path: {p}: no hf/ dataset and no .jsonl files")
        rows = [r for f in files for r in _jsonl_rows(f)]
    elif p.is_file():
        rows = _jsonl_rows(p)
    else:
        raise E2WMError(f"data.path: {spec}: no such file or directory")
    if not rows:
        raise E2WMError(f"data.path: {spec}: no training rows")
    return rows


# ---------------------------------------------------------------- tokenising

def encode_rows(rows: list[dict], tokenizer, max_length: int, task_weights: dict | None = None,
                truncation: str = "prompt_start"):
    """(examples, task names, rows truncated); see the module docstring for the answer mask and `truncation`."""
    tasks = sorted({r["task"] for r in rows})
    index = {t: i for i, t in enumerate(tasks)}
    pairs = encode_pairs(tokenizer, [(r["input"], r["ref"]) for r in rows], end="\n")
    bos = tokenizer.bos_token_id
    out, truncated = [], 0
    for r, (ids, start) in zip(rows, pairs):
        if len(ids) > max_length and truncation == "end":
            truncated += 1
            ids, start = ids[:max_length], min(start, max_length)
        elif len(ids) > max_length:
            truncated += 1
            head = ids[:1] if bos is not None and ids and ids[0] == bos and start > 0 else []
            answer = ids[start:][:max_length - len(head)]
            room = max_length - len(head) - len(answer)
            prompt = ids[len(head):start][-room:] if room > 0 else []
            ids, start = head + prompt + answer, len(head) + len(prompt)
        weight = (task_weights or {}).get(r["task"], r["weight"])
        out.append(Example(tuple(ids), start, weight, index[r["task"]]))
    return out, tasks, truncated


# ---------------------------------------------------------------- sampling

class GlobalBatches:
    """Global batches as a pure function of (seed, step); see the module docstring."""

    def __init__(self, lengths: list[int], global_batch: int, seed: int, sampling: str = "shuffle",
                 group_batches: int = 16):
        self.lengths = np.asarray(lengths)
        self.global_batch, self.seed, self.sampling, self.group = global_batch, seed, sampling, group_batches
        self.steps_per_epoch = math.ceil(len(lengths) / global_batch)
        self._epoch, self._batches = None, None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.lengths))
            if self.sampling == "shuffle":
                batches = [order[i:i + self.global_batch] for i in range(0, len(order), self.global_batch)]
            else:
                span = self.global_batch * self.group
                batches = []
                for g in range(0, len(order), span):
                    chunk = order[g:g + span]
                    chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                    batches += [chunk[i:i + self.global_batch] for i in range(0, len(chunk), self.global_batch)]
                batches = [batches[i] for i in rng.permutation(len(batches))]
            self._epoch, self._batches = epoch, batches
        return self._batches

    def batch(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, row indices) of global step `step` (0-based)."""
        epoch = step // self.steps_per_epoch
        return epoch, self.epoch_batches(epoch)[step % self.steps_per_epoch]


def deal(rows: np.ndarray, lengths, micro: int, world: int, accumulation: int) -> list[list[int]]:
    """The global batch over world × accumulation slots (at least len(rows) / micro of them), longest
    rows first; slot m * world + r is micro-step m of rank r. Slot sizes differ by at most one, the
    larger ones taking the shorter rows so that ranks finish together; with fewer rows than slots some
    stay empty."""
    order = sorted(rows.tolist(), key=lambda i: (-lengths[i], i))
    slots = world * accumulation
    size, extra = divmod(len(order), slots)
    ends = np.cumsum([size + (s >= slots - extra) for s in range(slots)]).tolist()
    return [order[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def collate(examples: list[Example], pad_id: int, multiple: int, device, scales: list[float] | None = None) -> dict:
    """Right-padded input_ids / attention_mask, per-token target weights (× the row's `scales`, its loss
    normaliser) and task ids, on `device`.

    An empty slot becomes one 2-token row of weight 0: every rank must run the same number of
    forwards under ZeRO-3, and it adds nothing to the loss."""
    if not examples:
        examples = [Example((pad_id, pad_id), 1, 0.0, 0)]
    width = max(len(e.ids) for e in examples)
    width = -(-width // multiple) * multiple
    n = len(examples)
    # built in host memory, then one copy per tensor to the device
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    weights = np.zeros((n, width), dtype=np.float32)
    tasks = np.zeros((n, width), dtype=np.int64)
    for i, e in enumerate(examples):
        ids[i, :len(e.ids)] = e.ids
        mask[i, :len(e.ids)] = 1
        weights[i, e.answer_start:len(e.ids)] = e.weight * (scales[i] if scales else 1.0)
        tasks[i, :] = e.task
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in
            {"input_ids": ids, "attention_mask": mask, "weights": weights, "tasks": tasks}.items()}


class GeneralText:
    """General-text rows for the `kl` regulariser: step s uses texts (s·B + i) mod n, i < B, dealt
    round-robin to ranks; the same rows whatever the world size."""

    def __init__(self, texts: list[str], tokenizer, max_length: int, batch: int):
        self.ids = [x for x in encode(tokenizer, texts, max_length) if len(x) >= 2]
        if not self.ids:
            raise E2WMError("regularizer.corpus: no text of 2 or more tokens")
        self.batch = batch

    def rows(self, step: int, rank: int, world: int) -> tuple[list[list[int]], int]:
        """(this rank's rows, positions compared in the whole step's batch)."""
        picked = [self.ids[(step * self.batch + i) % len(self.ids)] for i in range(self.batch)]
        return picked[rank::world], sum(len(x) for x in picked)
