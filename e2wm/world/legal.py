"""Enumerate the script lines an agent can execute now.

Candidates per action come from the indexes (what the agent is close to, holds, faces); each one
is then run through the same check that `World.step` uses, so the list and `step` never disagree.
"""
from __future__ import annotations

from e2wm.world.rules import RULES
from e2wm.world.vocab import ACTION_ARITY, ACTION_NAMES, PERSON, R_CLOSE, R_FACING, R_ON

_ANYWHERE = ("WALK", "RUN", "FIND", "TURNTO")
_HELD = ("DRINK", "READ", "DROP", "RELEASE", "PUTON", "PUTOBJBACK")
_FACING = ("LOOKAT", "POINTAT", "WATCH")
_TWO = ("PUTBACK", "PUTIN", "POUR")


def legal_lines(w, c: int, actions=None) -> list[str]:
    sc = w.scene
    wanted = ACTION_ARITY if actions is None else [a.upper() for a in actions]
    near_direct = w.out(c, R_CLOSE)
    near = set(near_direct)
    for x in near_direct:
        near |= w.out(x, R_CLOSE)
        near |= w.inn(x, R_ON)
    near = sorted(near)
    held = sorted(w.held(c))
    faced = set(w.out(c, R_FACING))
    for f in w.out(c, R_FACING):
        faced |= w.out(f, R_FACING)
    out = []
    for action in wanted:
        check = RULES[action][0]
        if ACTION_ARITY[action] == 0:
            if check(w, c) is None:
                out.append(f"[{ACTION_NAMES[action]}]")
            continue
        if action in _TWO:
            for a in held:
                for b in near:
                    if check(w, c, a, b) is None:
                        out.append(line_text(sc, action, (a, b)))
            continue
        if action in _ANYWHERE:
            cands = sc.ids
        elif action == "GREET":
            cands = [i for i in sc.ids if sc.props[i] & PERSON]
        elif action in _HELD:
            cands = held
        elif action in _FACING:
            cands = sorted(faced)
        elif action == "PUTOFF":
            cands = sorted(w.inn(c, R_ON))
        else:
            cands = near
        for a in cands:
            if check(w, c, a) is None:
                out.append(line_text(sc, action, (a,)))
    return out


def line_text(sc, action: str, ids: tuple[int, ...]) -> str:
    """The script line for an action key and node ids, cached on the scene."""
    key = (action, ids)
    s = sc.formatted.get(key)
    if s is None:
        s = sc.formatted[key] = " ".join(
            [f"[{ACTION_NAMES[action]}]"] + [f"<{sc.class_name[i]}> ({i})" for i in ids])
    return s
