"""`e2wm world demo`: a procedural apartment, a look around, and a short scripted episode."""
from __future__ import annotations

from e2wm.world.procedural import generate_apartment
from e2wm.world.vocab import (CAN_OPEN, CLOSED, CONTAINERS, GRABBABLE, HAS_SWITCH, OFF, ON_,
                              PLUGGED_OUT, R_INSIDE, R_ON, SURFACES, state_names)
from e2wm.world.world import World


def demo_episode(w: World) -> tuple[list[str], int]:
    """Fetch an object from where it lies into an openable container, then switch something on."""
    sc = w.scene
    grabbable = [i for i in sc.ids if sc.props[i] & GRABBABLE and w.out(i, R_ON)]
    boxes = [i for i in sc.ids if sc.props[i] & CAN_OPEN and sc.props[i] & CONTAINERS
             and not sc.props[i] & GRABBABLE and w.states(i) & CLOSED and not w.states(i) & ON_]
    switch = [i for i in sc.ids if sc.props[i] & HAS_SWITCH and not sc.props[i] & CAN_OPEN
              and w.states(i) & OFF and not w.states(i) & PLUGGED_OUT]
    label = sc.node_label
    obj = grabbable[0]
    box = next((b for b in boxes if w.room_of(b) != w.room_of(obj)), boxes[0])
    lines = [f"[Walk] {label(w.room_of(obj))}", f"[Walk] {label(obj)}", f"[Grab] {label(obj)}",
             f"[Walk] {label(box)}", f"[Open] {label(box)}", f"[PutIn] {label(obj)} {label(box)}",
             f"[Close] {label(box)}", f"[Grab] {label(obj)}"]   # the last one fails: it is shut in
    if switch:
        lines += [f"[Walk] {label(switch[0])}", f"[SwitchOn] {label(switch[0])}"]
    return lines, box


def run_demo(seed: int = 0, out=print) -> World:
    w = World.from_dict(generate_apartment(seed))
    sc = w.scene
    out(f"Procedural apartment (seed {seed}): {len(sc.ids)} nodes, {len(sc.edges)} edges")
    for room in sorted(sc.rooms):
        inside = [i for i in w.inn(room, R_INSIDE) if sc.props[i] and i not in sc.characters]
        surfaces = sum(1 for i in inside if sc.props[i] & SURFACES)
        out(f"  {sc.node_label(room):<22} {len(inside):3d} things, {surfaces} surfaces")
    for i in [i for i in sc.ids if sc.props[i] & GRABBABLE][:5]:
        where = ", ".join(f"ON {sc.node_label(x)}" for x in w.out(i, R_ON)) or "INSIDE " + ", ".join(
            sc.node_label(x) for x in w.out(i, R_INSIDE))
        out(f"  {sc.node_label(i):<22} {where}")
    out("Episode (agent 0):")
    lines, box = demo_episode(w)
    for k, line in enumerate(lines, 1):
        r = w.step(line)
        out(f"  {k:2d}. {line:<52} {'ok' if r.ok else 'FAILED: ' + r.message}")
    out(f"Now {sc.node_label(box)} is {', '.join(state_names(w.states(box)))} and holds "
        + ", ".join(sc.node_label(x) for x in sorted(w.inn(box, R_INSIDE))))
    return w
