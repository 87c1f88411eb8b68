"""Provenance: re-execute a recorded episode and check that the engine agrees with the record.

Datasets are built from the recorded events (lines, outcomes, rooms, moves), never from a fresh
run, so an episode made by another engine version, or edited by hand, would silently teach
something the world does not do. `verify` replays it and raises naming the episode and the step.
"""
from __future__ import annotations

from e2wm.collect.episodes import Episode
from e2wm.collect.explore import explore_scene, step_moves
from e2wm.errors import E2WMError
from e2wm.world.facts import Fact
from e2wm.world.scenes import load_scene
from e2wm.world.world import World


def verify(ep: Episode) -> None:
    """E2WMError naming the episode and the first step whose re-execution differs from its record."""
    where = f"episode {ep.key} ({ep.scene}, unit {ep.unit})"
    try:
        scene = explore_scene(ep.scene, ep.agents) if ep.kind == "explore" else load_scene(ep.scene)
        w = World.from_dict(scene, ep.scene)
    except E2WMError as e:
        raise E2WMError(f"{where}: cannot rebuild its scene: {e}") from None
    for k, s in enumerate(ep.steps):
        if ep.kind == "explore":
            try:
                moves = step_moves(w, s["agent"], s["line"])
            except E2WMError as e:
                raise E2WMError(f"{where}: step {k} {s['line']!r} was recorded ok but fails on "
                                f"re-execution: {e}") from None
            room = w.room_of(w.agents[s["agent"]])
            if moves != s.get("moves") or room != s.get("room"):
                raise E2WMError(f"{where}: step {k} {s['line']!r}: re-execution moves "
                                f"{_brief(moves)} and ends in room {room}; the record says "
                                f"{_brief(s.get('moves'))} and room {s.get('room')}")
        else:
            r = w.step(s["line"], s["agent"])
            if r.ok != s["ok"]:
                raise E2WMError(f"{where}: step {k} {s['line']!r}: recorded ok={s['ok']}, "
                                f"re-execution ok={r.ok} ({r.message or 'no message'})")
    if ep.kind == "plan" and ep.success:
        facts = [Fact.parse(t) for t in ep.goals]
        unmet = [f.text(w.scene) for f in facts if not f.holds(w)]
        if unmet:
            raise E2WMError(f"{where}: recorded as a success, but after re-execution these goal "
                            f"facts do not hold: {'; '.join(unmet)}")


def _brief(moves) -> str:
    if not moves:
        return "nothing"
    return ", ".join(f"{m['object']}: {m['from']['relation']}/{m['from']['target']}->"
                     f"{m['to']['relation']}/{m['to']['target']}" for m in moves)
