"""Collected episodes in, a train / evaluation split out: held-out scenes and held-out activities.

Evaluation gets every episode of the held-out scenes and every plan of the held-out ("unseen")
activities, wherever it ran; training gets the rest. Loading checks each episode against a
re-execution (`e2wm.collect.verify`). Both draws come from the seed, so the split
is a pure function of (episodes, fractions, seed).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from e2wm.collect.episodes import Episode
from e2wm.collect.verify import verify
from e2wm.errors import E2WMError
from e2wm.files import decode, input_dir, loads
from e2wm.world.activities import UNSEEN_NAMES


def load_episodes(directory: str | Path) -> list[Episode]:
    """Every episode of a collect output folder, in shard and line order, checked on the way in.

    Only the shards its manifest lists are read, from inside the folder, and each must match the
    manifest's sha256 (a shard altered or added since collection is refused). Each episode must
    parse, re-execute in the world model (`verify`) and have a key no other line has; errors name
    the shard and line.
    """
    from e2wm.collect.run import MANIFEST, read_manifest, verify_shards
    d = input_dir(directory, "episodes directory")
    m = read_manifest(d)
    stray = sorted(p.name for p in d.glob("shard-*.jsonl") if p.name not in m["shards"])
    if stray:
        raise E2WMError(f"{d / stray[0]}: not listed in {d / MANIFEST}; a shard added after collection "
                        f"is not read (move it away)")
    if not m["shards"]:
        raise E2WMError(f"{d / MANIFEST}: lists no shards (did the collection finish a shard?)")
    out, seen = [], {}
    for name, raw in verify_shards(d, m, keep=True).items():
        path = d / name
        text = decode(raw, str(path))
        for k, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{k}"
            try:
                ep = Episode.from_dict(loads(line, where, position=False))
                verify(ep)
            except E2WMError as e:
                raise E2WMError(e if str(e).startswith(where) else f"{where}: {e}") from None
            if ep.key in seen:
                raise E2WMError(f"{where}: episode {ep.key} repeats {seen[ep.key]}; each episode may enter "
                                f"the dataset once")
            seen[ep.key] = where
            out.append(ep)
    return out


def collection_activities(directory: str | Path) -> tuple[str, ...] | None:
    """The activities a procedural collection was asked to plan (its manifest's job, `collect.activities`),
    by library name, or None when it planned from the whole library (no list given; RobotHow goals;
    a hand-made manifest)."""
    from e2wm.collect.run import read_manifest
    from e2wm.world.activities import ActivityError, get_activity
    job = read_manifest(input_dir(directory, "episodes directory")).get("job")
    if not isinstance(job, dict) or job.get("scene_source", "procedural") != "procedural":
        return None
    names = job.get("activities")
    if not isinstance(names, list) or not names or not all(isinstance(a, str) for a in names):
        return None
    out = []
    for a in names:
        try:
            out.append(get_activity(a).name)
        except ActivityError:
            out.append(" ".join(a.lower().split()))
    return tuple(dict.fromkeys(out))


@dataclass
class Split:
    train: list[Episode]
    eval: list[Episode]
    eval_scenes: tuple[str, ...]
    unseen_activities: tuple[str, ...]


def split(episodes: list[Episode], eval_fraction: float, unseen_fraction: float, seed: int) -> Split:
    """Held-out scenes and activities, drawn with the seed.

    Unseen activities: the library's held-out set (`UNSEEN_ACTIVITIES`) wherever it was collected,
    plus `unseen_fraction` of the other activities. Held-out scenes are drawn one at a time, and
    a scene is passed over when holding it out would leave a seen activity without a successful
    training plan, so every seen activity is trained on (when the collection allows: too few
    such scenes, and the rest are drawn regardless).
    """
    rng = random.Random(f"split:{seed}")
    scenes = sorted({e.scene for e in episodes})
    n_eval = max(1, round(eval_fraction * len(scenes))) if len(scenes) > 1 else 0
    activities = sorted({e.activity for e in episodes if e.kind == "plan" and e.activity})
    fixed = sorted(set(activities) & UNSEEN_NAMES)
    others = [a for a in activities if a not in UNSEEN_NAMES]
    n_unseen = round(unseen_fraction * len(others)) if len(others) > 1 else 0
    unseen = set(fixed) | set(rng.sample(others, n_unseen))
    homes: dict[str, Counter] = {}   # seen activity -> scene -> successful plans there
    for e in episodes:
        if e.kind == "plan" and e.success and e.activity and e.activity not in unseen:
            homes.setdefault(e.activity, Counter())[e.scene] += 1
    held: set[str] = set()
    order = rng.sample(scenes, len(scenes))
    for scene in order:
        if len(held) < n_eval and all(sum(n for s, n in c.items() if s not in held and s != scene)
                                      for c in homes.values()):
            held.add(scene)
    held.update([s for s in order if s not in held][:n_eval - len(held)])   # a small collection
    is_eval = [e.scene in held or (e.kind == "plan" and e.activity in unseen) for e in episodes]
    return Split([e for e, v in zip(episodes, is_eval) if not v], [e for e, v in zip(episodes, is_eval) if v],
                 tuple(sorted(held)), tuple(sorted(unseen)))
