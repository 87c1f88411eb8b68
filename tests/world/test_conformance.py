"""The conformance harness: replaying RobotHow programs against the shipped and official finals."""
import copy
from dataclasses import dataclass

import pytest

pytest.importorskip("virtualhome_eval")
pytestmark = pytest.mark.virtualhome

from e2wm.world.conformance import (FIXES, ProgramReport, dict_facts, replay_programs,  # noqa: E402
                                    world_facts)
from e2wm.world.scenes import robothow_program, robothow_programs  # noqa: E402
from e2wm.world.script import parse_program  # noqa: E402
from e2wm.world.world import World  # noqa: E402


def _assert_counts_add_up(rep: ProgramReport):
    assert 0 <= rep.executed <= rep.total
    assert 0 <= rep.final_exact <= rep.final_match <= rep.executed
    assert rep.final_match + len(rep.unexplained) == rep.executed
    assert 0 <= rep.oracle_final_match <= rep.oracle_executed <= rep.total
    assert 0 <= rep.agree_with_oracle <= min(rep.executed, rep.oracle_executed)
    # every inexact match is explained by at least one documented fix
    assert sum(rep.explained.values()) >= rep.final_match - rep.final_exact
    assert set(rep.explained) <= set(FIXES)


@pytest.mark.slow
def test_first_25_programs():
    progs = robothow_programs()[:25]
    ticks = []
    rep = replay_programs(progs, progress=lambda: ticks.append(1))
    assert len(ticks) == rep.total == 25
    assert rep.executed >= 24
    assert rep.unexplained == []
    assert rep.final_match >= rep.oracle_final_match
    assert rep.agree_with_oracle >= 24
    _assert_counts_add_up(rep)


def test_robothow_programs_are_listed_and_named():
    progs = robothow_programs()
    assert len(progs) > 100
    assert [p.name for p in progs] == sorted(p.name for p in progs)
    first = progs[0]
    assert robothow_program(first.name).graphs == first.graphs
    assert set(first.graphs) >= {"init_graph", "final_graph"}
    assert first.lines and first.title


def test_a_replayed_program_reaches_the_shipped_final_graph():
    prog = robothow_programs()[0]
    w = World.from_dict(prog.graphs["init_graph"])
    for line in prog.lines:
        assert w.step(line).ok, line
    ours_states, ours_edges = world_facts(w)
    fin_states, fin_edges = dict_facts(prog.graphs["final_graph"])
    assert ours_states == fin_states
    keep = {"ON", "INSIDE", "HOLDS_RH", "HOLDS_LH"}
    assert {e for e in ours_edges if e[1] in keep} == {e for e in fin_edges if e[1] in keep}


@dataclass
class _FakeProgram:
    name: str
    graphs: dict
    lines: list


def _fake(base, script, final=None):
    graphs = copy.deepcopy(base.graphs)
    if final is not None:
        graphs["final_graph"] = final
    return _FakeProgram(base.name + "_fake", graphs, parse_program(script))


def test_a_wrong_final_graph_is_unexplained():
    base = robothow_programs()[0]
    final = copy.deepcopy(base.graphs["final_graph"])
    computer = next(n for n in final["nodes"] if n["id"] == 417)
    computer["states"] = ["ON" if s == "OFF" else s for s in computer["states"]]
    script = "\n".join(ln.format() for ln in base.lines)
    rep = replay_programs([base, _fake(base, script, final)])
    assert rep.total == 2 and rep.executed == rep.oracle_executed == 2
    assert rep.final_match == rep.oracle_final_match == 1
    assert rep.agree_with_oracle == 2
    assert len(rep.unexplained) == 1
    name, diff = rep.unexplained[0]
    assert name == base.name + "_fake"
    assert ("state", 417, "ON") in diff or ("state", 417, "OFF") in diff
    _assert_counts_add_up(rep)


def test_a_program_that_fails_is_not_executed():
    base = robothow_programs()[0]
    bad = _fake(base, "[Grab] <computer> (417)")   # not grabbable
    rep = replay_programs([bad])
    assert rep.total == 1
    assert rep.executed == 0 and rep.oracle_executed == 0
    assert rep.final_match == rep.agree_with_oracle == 0 and rep.unexplained == []
    _assert_counts_add_up(rep)
