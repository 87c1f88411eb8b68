"""Ordering traps in the activity library, derived by exhaustive search with the world's rules.

For each trap activity, TRAPS names two groups of its goal specs: `first` must come true before
the last of `then`. The test poses the activity in the first procedural apartment (0-49) where its
`first` facts do not hold yet (and its `given` ones, if any, do), keeps only the agent, the nodes of those facts, what contains them
and their rooms, and searches every legal action of that small scene (`World.legal_actions`:
all verbs that change anything a check reads) breadth-first:
  - the wrong order is a dead end: from the nearest state where every `then` fact holds and a
    `first` fact does not, no sequence of actions that keeps every `then` fact true reaches the
    `first` facts (all of that part of the state space is enumerated);
  - it needs an undo, not a new start: from there, `first` and `then` all come to hold when a
    `then` fact may be undone on the way (so the right order works from the start too).
"""
import random
from collections import deque
from functools import lru_cache

import pytest

from e2wm.world import World
from e2wm.world.activities import ACTIVITIES, UNSEEN_NAMES, facts_of_spec, get_activity
from e2wm.world.procedural import generate_apartment
from e2wm.world.vocab import R_FACING, R_INSIDE, STATE_BIT

# activity -> (first, then[, given]): goal specs of the activity, as the library writes them; `given`
# facts hold where the trap is shown (the apartment is chosen so).
TRAPS = {
    # PutIn needs the machine open and Open refuses a thing that is ON: a closed machine switched
    # on takes nothing more in.
    "wash clothes": (["laundry_detergent INSIDE washing_machine"], ["washing_machine ON"],
                     ["washing_machine CLOSED"]),
    "wash dishes with dishwasher": (["water_glass|cup|mug INSIDE dishwasher"], ["dishwasher ON"],
                                    ["dishwasher CLOSED"]),
    "bake a casserole": (["cookingpot INSIDE stove"], ["stove ON"], ["stove CLOSED"]),
    # Open needs a free hand: with both hands full the book stays shut.
    "read a book over tea": (["book|novel OPEN"], ["agent HOLDS mug|cup", "agent HOLDS book|novel"]),
    "read the newspaper over coffee": (["newspaper OPEN"], ["agent HOLDS mug|cup", "agent HOLDS newspaper"]),
    # PutIn refuses a closed container (held here: a bag left anywhere makes the search too big).
    "pack clothes for a trip": (["clothes_socks INSIDE bag"], ["bag CLOSED", "agent HOLDS bag"]),
    # Sit and Lie count what is ON the seat (a chair seats one; two things fill a couch to lie on).
    "sit on a cushion": (["agent SITS chair"], ["pillow ON chair"]),
    "curl up on the couch": (["agent LIES couch"], ["pillow ON couch", "blanket ON couch"]),
}
NEW = ("read a book over tea", "sit on a cushion", "pack clothes for a trip", "bake a casserole",
       "curl up on the couch", "read the newspaper over coffee")
RESTORED = {
    "wash clothes": ("clothes_shirt|clothes_pants|clothes_socks INSIDE washing_machine",
                     "laundry_detergent INSIDE washing_machine", "washing_machine CLOSED", "washing_machine ON"),
    "set up table": ("plate ON table", "fork ON table", "spoon|knife ON table"),
    "wash dishes with dishwasher": ("plate|bowl INSIDE dishwasher", "water_glass|cup|mug INSIDE dishwasher",
                                    "dishwasher CLOSED", "dishwasher ON"),
}
SEEDS = range(50)
MAX_STATES = 20_000
_CLEANLINESS = STATE_BIT["CLEAN"] | STATE_BIT["DIRTY"]
# Every verb that changes what a check reads. Left out: verbs with no effect; TurnTo and Wipe / Wash /
# Rinse / Scrub, whose FACING and CLEAN / DIRTY only effectless verbs read (the key ignores them too);
# Run, Release and PutObjBack, which do what Walk, Drop and PutBack / PutIn do.
VERBS = ("WALK", "FIND", "SIT", "LIE", "STANDUP", "GRAB", "DROP", "PUTBACK", "PUTIN", "POUR", "OPEN",
         "CLOSE", "SWITCHON", "SWITCHOFF", "PLUGIN", "PLUGOUT", "PUTON", "PUTOFF")


@lru_cache(maxsize=None)
def _world(seed: int) -> World:
    return World.from_dict(generate_apartment(seed))


def _holds(facts, w) -> bool:
    return all(f.holds(w) for f in facts)


def _posed(name):
    """(seed, world, first facts, then facts) in the first apartment of 0-49 where the activity
    poses with its `first` facts not yet true and its `given` facts true."""
    a = get_activity(name)
    first, then, given = (*TRAPS[name], [])[:3]
    for s in SEEDS:
        w = _world(s)
        if not a.poses(w):
            continue
        g = a.instantiate(w.clone(), random.Random(s))
        f, t, h = ([x for spec in specs for x in facts_of_spec(spec, g.facts, w.scene)]
                   for specs in (first, then, given))
        assert f and t and len(h) == len(given) and not set(f) & set(t), (name, s)
        if not any(x.holds(w) for x in f) and _holds(h, w):
            return s, w, f, t
    pytest.fail(f"{name}: posable with its first facts open (and given ones true) in none of "
                f"apartments 0-49")


def _small(w: World, facts) -> World:
    """The apartment cut down to the agent, the facts' nodes, what contains them and their rooms."""
    sc = w.scene
    keep = set()
    todo = [w.agents[0]] + [n for f in facts for n in f.nodes()]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += w.out(n, R_INSIDE)
    d = w.to_dict()
    edges = [e for e in d["edges"] if e["from_id"] in keep and e["to_id"] in keep]
    return World.from_dict({"nodes": [n for n in d["nodes"] if n["id"] in keep], "edges": edges})


def _key(w: World):
    ids = w.scene.ids
    return (tuple(w.states(n) & ~_CLEANLINESS for n in ids),
            frozenset(e for e in w.edges() if e[1] != R_FACING), tuple(w.grab_source(n) for n in ids))


def _search(start: World, stop, keep=None):
    """Breadth-first over every legal action: (the first state where `stop` holds or None, states seen);
    with `keep`, only through states where it holds."""
    seen, queue = {_key(start)}, deque([start])
    while queue:
        w = queue.popleft()
        if stop(w):
            return w, len(seen)
        for line in w.legal_actions(0, VERBS):
            nxt = w.clone()
            assert nxt.step(line).ok, line
            if keep is not None and not keep(nxt):
                continue
            k = _key(nxt)
            if k not in seen:
                seen.add(k)
                queue.append(nxt)
        assert len(seen) < MAX_STATES, "state space too large for an exhaustive search"
    return None, len(seen)


# ---- the restored goals and where the new activities live --------------------------------------------
@pytest.mark.parametrize("name", sorted(RESTORED))
def test_the_dropped_goals_are_back(name):
    assert get_activity(name).goals == RESTORED[name]


def test_new_trap_activities_are_in_the_library_and_its_held_out_set():
    names = {a.name for a in ACTIVITIES}
    assert set(NEW) <= names | UNSEEN_NAMES and set(NEW) <= set(TRAPS)
    assert set(NEW) & names and set(NEW) & UNSEEN_NAMES
    for name, (first, then, *given) in TRAPS.items():
        assert set(first + then + sum(given, [])) <= set(get_activity(name).goals), name


@pytest.mark.parametrize("name", [*RESTORED, *NEW])
def test_posable_in_some_apartments_0_49(name):
    a = get_activity(name)
    assert [s for s in SEEDS if a.poses(_world(s))], name


# ---- the traps, by search -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TRAPS))
def test_the_wrong_order_is_a_dead_end_that_only_an_undo_leaves(name):
    seed, w, first, then = _posed(name)
    small = _small(w, first + then)
    trapped, _ = _search(small, lambda x: _holds(then, x) and not _holds(first, x))
    assert trapped is not None, f"{name} (apartment {seed}): no state has the `then` facts before `first`"
    reached, _ = _search(trapped, lambda x: _holds(first, x), keep=lambda x: _holds(then, x))
    assert reached is None, f"{name} (apartment {seed}): no trap, `first` reached while `then` held"
    # an undo gets out, so the goal is reachable from the start, `first` before the last of `then`
    assert _search(trapped, lambda x: _holds(first + then, x))[0] is not None, f"{name}: not recoverable"
