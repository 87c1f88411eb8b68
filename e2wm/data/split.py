"""Collected episodes in, a train / evaluation split out: held-out scenes and held-out activities.

Evaluation gets every episode of the held-out scenes and every plan of the held-out ("unseen")
activities, wherever it ran; training gets the rest. Both draws come from the seed, so the split
is a pure function of (episodes, fractions, seed).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from e2wm.collect.episodes import Episode
from e2wm.errors import E2WMError


def load_episodes(directory: str | Path) -> list[Episode]:
    """Every episode in a collection output directory's shards, in shard and line order."""
    d = Path(directory)
    shards = sorted(d.glob("shard-*.jsonl"))
    if not shards:
        raise E2WMError(f"{d}: no shard-*.jsonl files (is it an `e2wm collect` output directory?)")
    out = []
    for path in shards:
        for k, line in enumerate(path.read_text().splitlines(), 1):
            try:
                out.append(Episode.from_dict(json.loads(line)))
            except json.JSONDecodeError as e:
                raise E2WMError(f"{path}:{k}: malformed JSON: {e.msg}") from None
            except E2WMError as e:
                raise E2WMError(f"{path}:{k}: {e}") from None
    return out


@dataclass
class Split:
    train: list[Episode]
    eval: list[Episode]
    eval_scenes: tuple[str, ...]
    unseen_activities: tuple[str, ...]


def split(episodes: list[Episode], eval_fraction: float, unseen_fraction: float, seed: int) -> Split:
    rng = random.Random(f"split:{seed}")
    scenes = sorted({e.scene for e in episodes})
    n_eval = max(1, round(eval_fraction * len(scenes))) if len(scenes) > 1 else 0
    held = set(rng.sample(scenes, n_eval))
    activities = sorted({e.activity for e in episodes if e.kind == "plan" and e.activity})
    n_unseen = round(unseen_fraction * len(activities)) if len(activities) > 1 else 0
    unseen = set(rng.sample(activities, n_unseen))
    is_eval = [e.scene in held or (e.kind == "plan" and e.activity in unseen) for e in episodes]
    return Split([e for e, v in zip(episodes, is_eval) if not v], [e for e, v in zip(episodes, is_eval) if v],
                 tuple(sorted(held)), tuple(sorted(unseen)))
