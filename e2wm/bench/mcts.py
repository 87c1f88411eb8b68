"""`e2wm bench mcts`: the same E2WM-setting UCT search driven by e2wm's engine and by the official one.

Both runs use one planner (`e2wm.collect.mcts.search`), one goal (a RobotHow program's
initial/final graph difference), one action space and one seed; only the environment differs:
`WorldEnv` over e2wm's World, or `OracleEnv` over the official evolving-graph executor (its
`check_one_step` / `execute_one_step(in_place=True)` on a shallow overlay clone, the cheapest safe
copy). The official run does fewer simulations; the figure compared is simulations per second.
"""
from __future__ import annotations

import random

from e2wm.bench import needs_official, report
from e2wm.collect.mcts import ActionSpace, MCTSConfig, WorldEnv, search
from e2wm.world.activities import goal_from_program
from e2wm.world.oracle import Oracle
from e2wm.world.scenes import robothow_program
from e2wm.world.world import World

DEFAULT_PROGRAM = "file1003_2"
# E2WM's own planner: rooms walkable at every step, every verb outside its excluded list, uniform random
# rollouts, the best-reward path (the goal-aware prior reads e2wm's World, which the official executor is not).
E2WM_SETTINGS = {"room_walks": "always", "goal_verbs": False, "rollout": "uniform", "select": "best_reward"}


class OracleEnv:
    """The planner's environment interface over the official executor (one agent)."""
    __slots__ = ("o", "agent", "c", "_scripts", "_Rel", "_St")

    def __init__(self, oracle: Oracle, agent: int = 0, scripts: dict | None = None):
        self.o, self.agent = oracle, agent
        chars = sorted(n.id for n in oracle.graph.get_nodes_by_attr("class_name", "character"))
        self.c = chars[agent]
        self._scripts = {} if scripts is None else scripts
        self._Rel, self._St = oracle._env.Relation, oracle._env.State

    def clone(self) -> "OracleEnv":
        return OracleEnv(self.o.shallow_clone(), self.agent, self._scripts)

    def _script(self, line: str):
        s = self._scripts.get(line)
        if s is None:
            s = self._scripts[line] = Oracle.script(line)
        return s

    def check(self, line: str) -> bool:
        return bool(self.o.check(self._script(line), self.agent))

    def step(self, line: str) -> bool:
        return bool(self.o.step(self._script(line), self.agent, in_place=True))

    def _ids(self, a: int, rel: str) -> set:
        # The official get_node_ids_from edits the overlay's sets in place; read without it.
        s, key = self.o.state, (a, self._Rel[rel])
        ids = set(s._graph.get_node_ids_from(a, key[1])) | s._new_edges_from.get(key, set())
        return ids - s._removed_edges_from.get(key, set())

    def _states(self, n: int):
        return self.o.state.get_node(n).states

    def resting(self) -> bool:
        st = self._states(self.c)
        return self._St.SITTING in st or self._St.LYING in st

    def close_to(self, x: int) -> bool:
        near = self._ids(self.c, "CLOSE")
        return x in near or any(x in self._ids(y, "CLOSE") or x in self._ids(y, "ON") for y in near)

    def held(self) -> tuple[int, ...]:
        return tuple(sorted(self._ids(self.c, "HOLDS_RH") | self._ids(self.c, "HOLDS_LH")))

    def closed_container(self, x: int) -> int | None:
        g, closed = self.o.graph, self._St.CLOSED
        boxes = [b for b in self._ids(x, "INSIDE")
                 if g.get_node(b).category != "Rooms" and closed in self._states(b)]
        return min(boxes) if boxes else None

    def truth(self, facts) -> int:
        mask = 0
        for i, f in enumerate(facts):
            if f.kind == "state":
                ok = self._St[f.name] in self._states(f.a)
            elif f.kind == "edge":
                ok = f.b in self._ids(f.a, f.name)
            else:
                ok = f.b in self._ids(f.a, "HOLDS_RH") | self._ids(f.a, "HOLDS_LH")
            mask |= ok << i
        return mask


def run(program: str | None = None, simulations: int = 20_000, official_simulations: int = 200,
        seed: int = 0, max_depth: int = 25, progress=None) -> dict:
    prog = robothow_program(program) if program else robothow_program(DEFAULT_PROGRAM)
    scene = prog.graphs["init_graph"]
    goal = goal_from_program(prog)
    world = World.from_dict(scene)
    ours_cfg = MCTSConfig(simulations=simulations, max_depth=max_depth, **E2WM_SETTINGS)
    space = ActionSpace(world.scene, goal.objects, ours_cfg, goal.facts)
    ours = search(WorldEnv(world), goal.facts, space, ours_cfg, random.Random(seed), progress)
    theirs_cfg = MCTSConfig(simulations=official_simulations, max_depth=max_depth, **E2WM_SETTINGS)
    space = ActionSpace(world.scene, goal.objects, theirs_cfg, goal.facts)
    theirs = search(OracleEnv(Oracle(scene)), goal.facts, space, theirs_cfg, random.Random(seed))
    sims_per_s = simulations / ours.wall_s
    official_per_s = official_simulations / theirs.wall_s
    return {
        "bench": "mcts", "program": prog.name, "title": prog.title, "goal_facts": len(goal.facts),
        "objects": len(goal.objects), "simulations": simulations, "max_depth": max_depth,
        "sims_per_s": round(sims_per_s, 1), "seconds_20k": round(20_000 / sims_per_s, 2),
        "wall_s": round(ours.wall_s, 2), "reached": ours.reached, "plan_steps": len(ours.actions),
        "official_simulations": official_simulations,
        "official_sims_per_s": round(official_per_s, 2),
        "official_seconds_20k": round(20_000 / official_per_s, 1),
        "ratio": round(sims_per_s / official_per_s, 1),
        "rollout_steps_per_sim": round(ours.stats["rollout_steps"] / simulations, 2),
    }


def main(args) -> int:
    from e2wm.progress import progress
    needs_official("mcts")
    with progress() as bar:
        task = bar.add_task("e2wm search", total=args.simulations)
        r = run(args.program, args.simulations, args.official_simulations, args.seed,
                progress=lambda k: bar.advance(task, k))
    return report(r, f"RobotHow {r['program']} ({r['title']}): {r['goal_facts']} goal facts, "
                  f"{r['objects']} goal objects; UCT depth {r['max_depth']}, one core",
                  f"{'':<12}{'simulations':>12}{'sims/s':>10}{'s per 20k':>11}",
                  f"{'e2wm':<12}{r['simulations']:>12,}{r['sims_per_s']:>10,}{r['seconds_20k']:>11}",
                  f"{'official':<12}{r['official_simulations']:>12,}{r['official_sims_per_s']:>10,}"
                  f"{r['official_seconds_20k']:>11}",
                  f"ratio {r['ratio']}x; e2wm plan reached the goal: {r['reached']} ({r['plan_steps']} steps)")
