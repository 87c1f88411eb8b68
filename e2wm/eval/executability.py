"""Does a generated plan work? Its sentences are read back into script lines (`plan_parse`) and run
in the world model from the item's start state: the share of sentences that ran before the first
failure, whether all of them ran, and whether the goal facts hold at the end.

An item carries `{"scene": source, "goals": [fact texts], "nodes": [ids]}` (our plan suites write it
as the row's "world" field; E2WM's released files have none, and get no executability figures).
`e2wm.data.eval_format.read_eval` checks each row's world (its shape, that its scene loads, that its goal
facts and nodes name nodes of that scene) when the suite is read, before any model loads.
"""
from __future__ import annotations

from dataclasses import dataclass

from e2wm.data.plan_parse import parse_plan
from e2wm.world.facts import Fact
from e2wm.world.scenes import load_scene
from e2wm.world.world import World


@dataclass(frozen=True)
class Execution:
    sentences: int
    executed: int             # sentences that parsed and ran, before the first that did not
    executable: bool          # every sentence parsed and ran
    success: bool             # executable, and every goal fact holds at the end
    stopped: str | None       # why it stopped: "unparsable", "unknown 'x'", or the engine's message

    @property
    def fraction(self) -> float:
        return self.executed / self.sentences if self.sentences else 0.0


def execute(plan: str, world_ref: dict, scene_json: dict | None = None) -> Execution:
    """Run `plan` for agent 0 in the item's start world (`scene_json` overrides loading the source)."""
    w = World.from_dict(scene_json if scene_json is not None else load_scene(world_ref["scene"]))
    steps = parse_plan(plan, w.scene, prefer=world_ref.get("nodes", ()))
    done, stopped = 0, None
    for step in steps:
        if step.line is None:
            stopped = step.problem
            break
        result = w.step(step.line, 0)
        if not result.ok:
            stopped = result.message or "failed"
            break
        done += 1
    runs = bool(steps) and done == len(steps)
    holds = runs and all(Fact.parse(g, w.scene).holds(w) for g in world_ref.get("goals", ()))
    return Execution(len(steps), done, runs, holds, stopped)
