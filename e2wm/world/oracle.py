"""Adapter to the official VirtualHome evolving-graph executor, as shipped (bug-fixed) in eai-eval.

Imported through one path only, `virtualhome_eval.simulation.evolving_graph`: importing the same
modules under a second name creates a second `Action` enum and every action fails as unsupported.
Used for conformance checks and benchmarks, never by the engine itself.
"""
from __future__ import annotations

import importlib.util

from e2wm.errors import E2WMError

_PKG = "virtualhome_eval.simulation.evolving_graph"


def available() -> bool:
    return importlib.util.find_spec("virtualhome_eval") is not None


def _modules():
    if not available():
        raise E2WMError("the official VirtualHome executor is not installed: "
                        "pip install 'e2wm[virtualhome]' (the eai-eval package)")
    from virtualhome_eval.simulation.evolving_graph import environment, execution, scripts
    return environment, execution, scripts


class Oracle:
    """One official world: a base graph, a state overlay and one executor per character."""

    def __init__(self, scene_json: dict):
        env, ex, _ = _modules()
        self._env, self._ex = env, ex
        self.graph = env.EnvironmentGraph(scene_json)
        self.state = env.EnvironmentState(self.graph, {}, instance_selection=True)
        n_chars = len(self.graph._class_name_map.get("character", []))
        self.executors = [ex.ScriptExecutor(self.graph, {}, char_index=i) for i in range(max(1, n_chars))]

    @staticmethod
    def script(line: str):
        """A one-line official Script from a line in the plain `(id)` form."""
        _, _, scripts = _modules()
        return scripts.Script([scripts.parse_script_line(line, 0)])

    def step(self, script, agent: int = 0, in_place: bool = True) -> bool:
        """Execute; the official call copies the whole overlay unless in_place."""
        executor = self.executors[agent]
        executor.info.messages.clear()   # its message log otherwise grows without bound
        ok, state = executor.execute_one_step(script, self.state, in_place=in_place)
        self.state = state
        return ok

    def check(self, script, agent: int = 0) -> bool:
        return self.executors[agent].check_one_step(script, self.state)

    def shallow_clone(self) -> "Oracle":
        """The cheapest safe copy of an official state (see shared notes on its overlay)."""
        o = Oracle.__new__(Oracle)
        o._env, o._ex, o.graph, o.executors = self._env, self._ex, self.graph, self.executors
        s, t = self.state, self._env.EnvironmentState(self.graph, {}, instance_selection=True)
        t._new_nodes = dict(s._new_nodes)
        t._removed_edges_from = {k: set(v) for k, v in s._removed_edges_from.items()}
        t._new_edges_from = {k: set(v) for k, v in s._new_edges_from.items()}
        t._script_objects = dict(s._script_objects)
        t.executor_data = dict(s.executor_data)
        o.state = t
        return o

    def grab_sources(self) -> dict[int, tuple[int, str]]:
        """obj id -> (support id, relation name), the official executor_data."""
        return {k[1]: (v[0].id, v[1].name) for k, v in self.state.executor_data.items()}

    def set_grab_sources(self, sources: dict[int, tuple[int, str]]) -> None:
        Action = _modules()[2].Action
        Rel = self._env.Relation
        self.state.executor_data = {
            (Action.GRAB, o): (self.graph.get_node(s), Rel[r]) for o, (s, r) in sources.items()}

    def facts(self) -> tuple[set, set]:
        """(node states {(id, STATE)}, edges {(from, REL, to)}) of the current state."""
        d = self.state.to_dict()
        states = {(n["id"], s) for n in d["nodes"] for s in n["states"]}
        edges = {(e["from_id"], e["relation_type"], e["to_id"]) for e in d["edges"]}
        return states, edges
