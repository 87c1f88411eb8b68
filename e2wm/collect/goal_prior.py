"""Goal-aware action preferences for the planner: the unmet goal facts regressed through the rules.

Each unmet goal fact has an *achiever*, the one action that makes it true (SwitchOn for "tv ON",
PutIn for "mug INSIDE fridge", Sit for "agent ON couch"). Where the achiever cannot run yet, its
unmet preconditions, the ones `e2wm.world.rules` checks (table `PRECONDITIONS` below, tested against
the rules in tests/collect/test_goal_prior.py), are regressed in turn: walk to a thing before acting
on it, stand up before walking, free a hand before a grab or an open, open a closed container
before putting into it or taking out of it, switch an appliance off before opening it, plug it in
before switching it on. What comes out, per state, is

* the *frontier*: the lines that can run now and start such a chain, and
* a *hard cost* per goal fact: how many non-walk steps its chain still needs (0 when it holds).

`GoalPrior.preferred` keeps the legal actions on the frontier and defers those that raise the hard
cost of another unmet goal fact: closing the washing machine while clothes must still go in,
switching it on while shut with the detergent outside (opening it again needs a switch-off, which
undoes the goal), grabbing a second item while a container that needs a free hand to open is still
shut. Undoing a goal fact that holds is not deferred: a frontier action that does so is needed (a
running machine is switched off to be opened, a seated agent stands up to walk). Walks are never
deferred: closeness costs one walk to restore. When every frontier action is deferred they are all
kept (some orders have no free lunch).

The bias only steers the search; plans are still re-executed to the goal (e2wm.collect.verify).
"""
from __future__ import annotations

from e2wm.world.legal import line_text
from e2wm.world.rules import possible
from e2wm.world.vocab import (CAN_OPEN, CLOSED, GRABBABLE, LYING, OFF, ON_, OPEN, PLUGGED_IN,
                              PLUGGED_OUT, R_ON, SITTING)

_RESTING = SITTING | LYING
_DEPTH = 6        # regression depth: deeper chains count as one more step with no frontier
_MISSING = 99     # the hard cost of a fact with no achiever here (unknown relation, excluded verb)
_SIT_MAX = {"couch": 4, "bed": 4, "chair": 1, "loveseat": 2, "sofa": 4, "toilet": 1,
            "pianobench": 2, "bench": 2}
_LIE_MAX = {"couch": 2, "bathtub": 2, "bed": 3, "loveseat": 2, "sofa": 2, "bench": 1}


# ---- preconditions, as literals over (world, character, node) ---------------------------------
# Each literal: (test, fixer name). The tests ask the same World queries the rule checks ask.
def _close(w, c, x):
    return w.close_to(c, x)


def _reachable(w, c, x):
    return not w.inside_closed(x)


def _not_grabbed(w, c, x):
    return w.grab_source(x) is None


def _free_hand(w, c, x):
    return w.free_hand(c) is not None


def _holds(w, c, x):
    return w.holds(c, x)


def _standing(w, c, x):
    return not w.states(c) & _RESTING


def _resting(w, c, x):
    return bool(w.states(c) & _RESTING)


def _not_sitting(w, c, x):
    return not w.states(c) & SITTING


def _not_lying(w, c, x):
    return not w.states(c) & LYING


def _is_closed(w, c, x):
    return bool(w.states(x) & CLOSED)


def _is_open(w, c, x):
    return bool(w.states(x) & OPEN)


def _open_if_openable(w, c, x):
    return not w.scene.props[x] & CAN_OPEN or bool(w.states(x) & OPEN)


def _not_on(w, c, x):
    return not w.states(x) & ON_


def _is_on(w, c, x):
    return bool(w.states(x) & ON_)


def _is_off(w, c, x):
    return bool(w.states(x) & OFF)


def _plugged(w, c, x):
    return not w.states(x) & PLUGGED_OUT


def _unplugged(w, c, x):
    return bool(w.states(x) & PLUGGED_OUT)


def _plugged_in(w, c, x):
    return bool(w.states(x) & PLUGGED_IN)


def _holds_any(w, c, x):
    return bool(w.held(c))


def _seat_room(most):
    def test(w, c, x):
        return len(w._inn(x, R_ON)) < most.get(w.scene.class_name[x], 1)
    return test


# verb -> ((literal test, argument index or None, fixer), ...) in the order the rule checks them. A fixer
# names how the literal is made true (see `GoalPrior._fix`); None: nothing in a plan can (a closed
# thing to be opened must be CLOSED, which only an open could have changed).
PRECONDITIONS: dict[str, tuple] = {
    "WALK": ((_standing, None, "standup"),),
    "GRAB": ((_not_grabbed, 0, None), (_close, 0, "walk"), (_reachable, 0, "open_box"),
             (_free_hand, 0, "free_hand")),
    "OPEN": ((_close, 0, "walk"), (_free_hand, 0, "free_hand"), (_is_closed, 0, None),
             (_not_on, 0, "switchoff")),
    "CLOSE": ((_close, 0, "walk"), (_is_open, 0, None)),
    "SWITCHON": ((_close, 0, "walk"), (_is_off, 0, None), (_plugged, 0, "plugin")),
    "SWITCHOFF": ((_close, 0, "walk"), (_is_on, 0, None)),
    "PLUGIN": ((_close, 0, "walk"), (_free_hand, 0, "free_hand"), (_unplugged, 0, None)),
    "PLUGOUT": ((_close, 0, "walk"), (_free_hand, 0, "free_hand"), (_plugged_in, 0, None)),
    "PUTBACK": ((_holds, 0, "grab"), (_close, 1, "walk")),
    "PUTIN": ((_holds, 0, "grab"), (_close, 1, "walk"), (_open_if_openable, 1, "open")),
    "POUR": ((_holds, 0, "grab"), (_close, 1, "walk")),
    "PUTON": ((_holds, 0, "grab"),),
    "SIT": ((_close, 0, "walk"), (_not_sitting, 0, "standup"), (_seat_room(_SIT_MAX), 0, "clear_seat")),
    "LIE": ((_close, 0, "walk"), (_not_lying, 0, "standup"), (_seat_room(_LIE_MAX), 0, "clear_seat")),
    "STANDUP": ((_resting, None, None),),
    "TURNTO": (),
    "DROP": ((_holds, 0, "grab"),),
    "WIPE": ((_close, 0, "walk"), (_holds_any, 0, "grab_any")),
    "RINSE": ((_close, 0, "walk"),), "WASH": ((_close, 0, "walk"),), "SCRUB": ((_close, 0, "walk"),),
}

# state goal -> the verbs that make it true (alternatives)
_STATE_ACHIEVERS = {"OPEN": ("OPEN",), "CLOSED": ("CLOSE",), "ON": ("SWITCHON",), "OFF": ("SWITCHOFF",),
                    "PLUGGED_IN": ("PLUGIN",), "PLUGGED_OUT": ("PLUGOUT",),
                    "CLEAN": ("RINSE", "WIPE", "WASH", "SCRUB")}


class GoalPrior:
    """Frontier and hard costs of one goal's facts, for one agent, in any world state."""

    def __init__(self, scene, facts, objects, char: int, verbs):
        self.scene, self.facts, self.c = scene, tuple(facts), char
        self.verbs = frozenset(verbs)            # the verbs the action space may use
        self.objects = tuple(sorted(objects))
        self.keep = frozenset(f.b for f in self.facts if f.kind == "holds" and f.a == char)
        # where each object must end up (ON / INSIDE goals), for freeing a hand usefully
        self.place = {f.a: (f.name, f.b) for f in self.facts
                      if f.kind == "edge" and f.name in ("ON", "INSIDE") and f.a != char and f.b != char}
        self.achievers = [self._achievers(f) for f in self.facts]
        self.grabbable = tuple(o for o in self.objects if possible("GRAB", scene, o)
                               and scene.props[o] & GRABBABLE)
        # Walks undo FACING and INSIDE-a-room facts: then they are checked for harm like the rest.
        self.walks_harm = any(f.a == char and f.name in ("FACING", "INSIDE") for f in self.facts)
        self.keys: dict[str, tuple[str, tuple[int, ...]]] = {}   # frontier line -> (verb, node ids)
        self._freeing = False

    # ---- what each goal fact needs ---------------------------------------------------------
    def _achievers(self, f) -> tuple[tuple[str, tuple[int, ...]], ...]:
        c, sc = self.c, self.scene
        if f.kind == "holds":
            return (("GRAB", (f.b,)),) if f.a == c else ()
        if f.kind == "state":
            if f.a == c and f.name in ("SITTING", "LYING"):
                verb = "SIT" if f.name == "SITTING" else "LIE"
                seats = [g.b for g in self.facts if g.kind == "edge" and g.a == c and g.name == "ON"]
                return tuple((verb, (s,)) for s in seats)
            verbs = _STATE_ACHIEVERS.get(f.name, ())
            return tuple((v, (f.a,)) for v in verbs if possible(v, sc, f.a))
        if f.a == c:
            if f.name == "ON":
                lying = any(g.kind == "state" and g.a == c and g.name == "LYING" for g in self.facts)
                return (("LIE" if lying else "SIT", (f.b,)),)
            if f.name == "INSIDE" and f.b in sc.rooms:
                return (("WALK", (f.b,)),)
            if f.name == "FACING":
                return (("TURNTO", (f.b,)),)
            return ()
        if f.name == "ON":
            return (("PUTON", (f.a,)),) if f.b == c else (("PUTBACK", (f.a, f.b)),)
        if f.name == "INSIDE":
            return (("POUR" if sc.class_name[f.a] == "water" else "PUTIN", (f.a, f.b)),)
        return ()

    def costs(self, w) -> tuple[int, ...]:
        """The hard cost of each goal fact in world `w` (0 where it holds)."""
        return tuple(0 if f.holds(w) else self._best(w, ach, 0)[0]
                     for f, ach in zip(self.facts, self.achievers))

    def frontier(self, w) -> tuple[set[str], tuple[int, ...]]:
        """(the lines that start a chain towards some unmet fact, the hard cost of each fact)."""
        lines: set[str] = set()
        cost = []
        for f, ach in zip(self.facts, self.achievers):
            if f.holds(w):
                cost.append(0)
                continue
            k, front = self._best(w, ach, 0)
            cost.append(k)
            lines |= front
        return lines, tuple(cost)

    def _best(self, w, alternatives, depth) -> tuple[int, set[str]]:
        """The cheapest of alternative actions: (hard cost, union of the cheapest ones' frontiers)."""
        best, front = _MISSING, set()
        for verb, args in alternatives:
            if verb not in self.verbs:
                continue
            k, f = self._do(w, verb, args, depth)
            if k < best:
                best, front = k, set(f)
            elif k == best:
                front |= f
        return best, front

    def _do(self, w, verb, args, depth) -> tuple[int, set[str]]:
        """Hard cost and frontier of running `verb args` (after its unmet preconditions)."""
        own = 0 if verb == "WALK" else 1
        if depth > _DEPTH:
            return own, set()
        c = self.c
        cost, front = own, set()
        for test, i, fixer in PRECONDITIONS.get(verb, ()):
            x = None if i is None else args[i]
            if test(w, c, x):
                continue
            if fixer is None:
                return _MISSING, set()
            k, f = self._fix(w, fixer, x, depth + 1)
            cost += k
            front |= f
        # The action's own line is on the frontier too: runnable now when nothing was missing, and
        # otherwise the last line of a macro that fixes the missing piece first (StandUp + Walk,
        # Open + Grab); alone it is not legal then, so it selects nothing else.
        line = line_text(self.scene, verb, args)
        self.keys[line] = (verb, args)
        front.add(line)
        return min(cost, _MISSING), front

    def _fix(self, w, fixer, x, depth) -> tuple[int, set[str]]:
        if fixer == "walk":
            box = w.closed_container(x)
            return self._do(w, "WALK", (x if box is None else box,), depth)
        if fixer == "open_box":
            return self._do(w, "OPEN", (w.closed_container(x),), depth)
        if fixer == "open":
            return self._do(w, "OPEN", (x,), depth)
        if fixer == "switchoff":
            return self._do(w, "SWITCHOFF", (x,), depth)
        if fixer == "plugin":
            return self._do(w, "PLUGIN", (x,), depth)
        if fixer == "standup":
            return self._do(w, "STANDUP", (), depth)
        if fixer == "grab":
            return self._do(w, "GRAB", (x,), depth)
        if fixer == "grab_any":
            return self._best(w, [("GRAB", (o,)) for o in self.grabbable], depth)
        if fixer == "clear_seat":
            on = sorted(o for o in w._inn(x, R_ON) if o not in self.scene.characters)
            return self._best(w, [("GRAB", (o,)) for o in on], depth)
        if fixer == "free_hand":
            # Put a held thing where a goal wants it, or drop it; never one the goal wants held.
            # Inside that put (which may need a free hand itself) only drops are considered.
            alts = []
            for h in sorted(w.held(self.c)):
                if h in self.keep:
                    continue
                dest = self.place.get(h)
                if dest is not None and not self._freeing:
                    alts.append(("PUTIN" if dest[0] == "INSIDE" else "PUTBACK", (h, dest[1])))
                alts.append(("DROP", (h,)))
            was, self._freeing = self._freeing, True
            try:
                return self._best(w, alts, depth)
            finally:
                self._freeing = was
        raise ValueError(fixer)

    # ---- the planner's entry point ------------------------------------------------------------
    def preferred(self, env, space, legal=None):
        """The legal actions that make progress on an unmet goal fact without setting another back.

        Past the first step. `legal`: the action space's actions in `env`, if already listed (the
        result keeps their order); else `space.among` finds the few on the frontier (sorted).
        """
        w = env.w
        front, base = self.frontier(w)
        if not front:
            return []
        if legal is None:
            keys = self.keys
            cands = space.among(env, {line: keys[line] for line in front})
        else:
            cands = [a for a in legal if a[-1] in front]
        if len(cands) <= 1:
            return cands
        good = []
        for a in cands:
            if not self.walks_harm and all(line.startswith("[Walk]") for line in a):
                good.append(a)
                continue
            trial = w.clone()
            for line in a:
                trial.step(line, env.agent)
            # Raising an unmet fact's cost is an avoidable ordering mistake; undoing a met one is
            # not (what is on the frontier needs it: a switch-off to open, a stand-up to walk).
            if not any(k > b > 0 for k, b in zip(self.costs(trial), base)):
                good.append(a)
        return good or cands

    def room_walks(self, env, legal):
        """Of the first step's room walks, those to the rooms of the things on the frontier."""
        w, sc = env.w, self.scene
        front, _ = self.frontier(w)
        rooms = {line_text(sc, "WALK", (r,)) for line in front for n in self.keys[line][1]
                 if (r := w.room_of(n)) is not None}
        return [a for a in legal if a[-1] in rooms]
