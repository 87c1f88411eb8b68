"""Household activities as goals: a library of class-level goals, and RobotHow programs' goals.

Library: named activities of the RobotHow kind ("watch tv", "make coffee"), each a few class-level
goal specs. `Activity.instantiate` binds every class token to one node of a world and returns the
concrete goal facts. Spec grammar, one string per goal:
  "<cls> STATE"               a state fact: STATE one of OPEN CLOSED ON OFF PLUGGED_IN ...
  "<cls> ON|INSIDE <cls>"     an edge fact
  "agent HOLDS <cls>"         the agent holds it (either hand)
  "agent SITS|LIES <cls>"     agent ON it, plus the agent SITTING / LYING
  "agent FACING <cls>"        agent FACING it
  "agent INSIDE <room>"       agent INSIDE the room
  "agent WEARS <cls>"         clothes ON the agent (PutOn)
A class token may list alternatives ("couch|bed"). Each distinct token binds one node, and a token
used twice binds the same node.

Ordering traps: some goals hold a pair of facts that must come true in one order, because the
world's rules make the other order a dead end that only an undo leaves (a machine that is ON will
not open, so what goes in it goes in before it is switched on; a closed container takes nothing in;
Open needs a free hand; a seat takes only so many things ON it, a sitter included). The comment
above such an activity names its trap; tests/world/test_activity_traps.py derives each by search.

RobotHow (E2WM's goal source): the goal is what a program's final graph adds to its initial graph,
less the incidental CLOSE and FACING edges and where the character happens to stand.
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass
from functools import cache

from e2wm.errors import AgentError, E2WMError
from e2wm.world.facts import HOLDS, Fact
from e2wm.world.vocab import R_INSIDE, R_ON, RELATIONS, ROOM_CATEGORY, ROOM_NAMES, STATE_BIT


class ActivityError(E2WMError):
    """An activity is unknown, malformed, or cannot be instantiated in a world."""


@dataclass(frozen=True)
class Goal:
    activity: str
    facts: tuple[Fact, ...]       # sorted, deduplicated
    # Sorted ids of the non-room, non-character nodes the planner may act on: the facts' nodes,
    # plus for the library the `uses` bindings, the containers of bound nodes and what rests on a
    # seat the agent must take; for RobotHow the nodes the program's script names.
    objects: tuple[int, ...]
    agent: int = 0
    source: str = "library"       # "library" or "robothow:<program name>"


AGENT = "agent"
# The object states a goal or an initial condition may name, in the order conditions list them.
OBJECT_STATES = ("OPEN", "CLOSED", "ON", "OFF", "PLUGGED_IN", "PLUGGED_OUT", "DIRTY", "CLEAN")
_X = "X"   # the object of an agent verb in the templates below
_AGENT_VERBS = {
    "HOLDS": (("holds", AGENT, HOLDS, _X),),
    "SITS": (("edge", AGENT, "ON", _X), ("state", AGENT, "SITTING", None)),
    "LIES": (("edge", AGENT, "ON", _X), ("state", AGENT, "LYING", None)),
    "FACING": (("edge", AGENT, "FACING", _X),),
    "INSIDE": (("edge", AGENT, "INSIDE", _X),),
    "WEARS": (("edge", _X, "ON", AGENT),),
}
_TOKEN = re.compile(r"[a-z_]+(\|[a-z_]+)*")


@cache
def _templates(spec: str) -> tuple[tuple[str, str, str, str | None], ...]:
    """The (kind, subject, name, object) fact templates of one goal spec; tokens stay unbound."""
    words = spec.split()
    if any(not _TOKEN.fullmatch(w) for w in words[::2]) or AGENT in words[2:]:
        raise ActivityError(f"goal spec {spec!r}: class tokens look like 'mug' or 'couch|sofa'; "
                            f"'{AGENT}' may only be the subject")
    if len(words) == 2 and words[0] != AGENT and words[1] in OBJECT_STATES:
        return (("state", words[0], words[1], None),)
    if len(words) == 3 and words[0] != AGENT and words[1] in ("ON", "INSIDE"):
        return (("edge", *words),)
    if len(words) == 3 and words[0] == AGENT and words[1] in _AGENT_VERBS:
        if words[1] == "INSIDE" and not set(words[2].split("|")) <= set(ROOM_NAMES):
            raise ActivityError(f"goal spec {spec!r}: the agent can only be INSIDE a room")
        return tuple(tuple(words[2] if x == _X else x for x in t) for t in _AGENT_VERBS[words[1]])
    raise ActivityError(f"goal spec {spec!r}: expected '<cls> STATE' ({' '.join(OBJECT_STATES)}), "
                        f"'<cls> ON|INSIDE <cls>' or 'agent {'|'.join(_AGENT_VERBS)} <cls>'")


_LABEL_CLASS = re.compile(r"^<([^<>]+)> \(-?\d+\)$")


def _fact_classes(text: str) -> tuple[str, str, str | None]:
    """(class of a, name, class of b or None) of a fact's text form."""
    parts = [p.strip() for p in text.split(" || ")]
    m = [_LABEL_CLASS.match(p) for p in parts[::2]]
    if len(parts) not in (2, 3) or not all(m):
        raise ActivityError(f"goal fact {text!r}: expected '<a> (id) || NAME' or "
                            f"'<a> (id) || REL || <b> (id)'")
    return m[0].group(1), parts[1], m[1].group(1) if len(m) == 2 else None


def _instance_of(template, fact) -> bool:
    """Whether a fact's (class of a, name, class of b) instantiates a goal-spec template."""
    _, a, name, b = template
    fa, fname, fb = fact

    def is_(cls, token):
        return cls == "character" if token == AGENT else cls in token.split("|")
    return fname == name and is_(fa, a) and (fb is None if b is None else fb is not None and is_(fb, b))


def facts_of_spec(spec: str, facts, scene) -> list[Fact]:
    """The facts of `facts` that instantiate one goal spec (any of its fact templates)."""
    return [f for f in facts if any(_instance_of(t, _fact_classes(f.text(scene))) for t in _templates(spec))]


def _candidates(scene, token: str) -> list[int]:
    return sorted(i for c in token.split("|") for i in scene.by_class.get(c, ()))


def _fact(kind: str, a: int, name: str, b: int | None) -> Fact:
    if kind == "state":
        return Fact.state(a, name)
    return Fact.holding(a, b) if kind == "holds" else Fact.edge(a, name, b)


def _goal(activity, facts, extra, skip, agent, source) -> Goal:
    facts = tuple(sorted(set(facts)))
    objects = {n for f in facts for n in f.nodes()}.union(extra) - skip
    return Goal(activity, facts, tuple(sorted(objects)), agent, source)


@dataclass(frozen=True)
class Activity:
    name: str
    goals: tuple[str, ...]
    uses: tuple[str, ...] = ()    # extra class tokens the planner may need to touch

    def __post_init__(self):
        if not self.goals or self.name != " ".join(self.name.lower().split()):
            raise ActivityError(f"activity {self.name!r}: needs a lower-case name and goals")
        bad = [t for t in self.uses if not _TOKEN.fullmatch(t) or t == AGENT]
        if bad:
            raise ActivityError(f"activity {self.name!r}: bad class token(s) in uses: {bad}")
        tokens = self.classes()   # parses every goal spec
        for i, t in enumerate(tokens):
            for u in tokens[i + 1:]:
                if set(t.split("|")) & set(u.split("|")):   # two tokens could bind one node
                    raise ActivityError(f"activity {self.name!r}: tokens {t!r} and {u!r} overlap")

    def _specs(self):
        return [t for g in self.goals for t in _templates(g)]

    def classes(self) -> tuple[str, ...]:
        """The class tokens it needs, in order of first use."""
        tokens = [x for _, a, _, b in self._specs() for x in (a, b) if x not in (AGENT, None)]
        return tuple(dict.fromkeys(tokens + list(self.uses)))

    def fits(self, scene) -> bool:
        return all(_candidates(scene, t) for t in self.classes())

    def unmet_specs(self, facts) -> list[str]:
        """The goal specs that no fact of `facts` (`Fact.text` form, as episodes store them)
        instantiates, judged by class names: what a goal posed under an older spec lacks."""
        seen = {_fact_classes(f) for f in facts}
        return [g for g in self.goals if not all(
            any(_instance_of(t, f) for f in seen) for t in _templates(g))]

    def instantiate(self, world, rng: random.Random, agent: int = 0) -> Goal:
        """Bind each token to a node and return the goal; ActivityError if it cannot be posed here.

        Tokens bind in order of first use, each preferring nodes in a room an earlier binding is
        in: the couch faces the television it binds with, the faucet is the bathroom's for teeth.
        A binding is kept only when it leaves the plan work on every goal object (`_open`); up to
        `_DRAWS` bindings are drawn, then the first open one in candidate order is taken.
        """
        sc = world.scene
        missing = [t for t in self.classes() if not _candidates(sc, t)]
        if missing:
            raise ActivityError(f"activity {self.name!r} needs {', '.join(missing)}; scene lacks "
                                f"{'it' if len(missing) == 1 else 'them'}")
        if not 0 <= agent < len(world.agents):
            raise AgentError(f"agent {agent}: this world has {len(world.agents)} character(s)")
        specs = self._specs()
        for _ in range(_DRAWS):
            bound, rooms = {AGENT: world.agents[agent]}, set()
            for t in self.classes():
                cands = _candidates(sc, t)
                near = [n for n in cands if world.room_of(n) in rooms]
                bound[t] = rng.choice(near or cands)
                rooms.add(world.room_of(bound[t]))
            if _open(world, facts := [_fact(k, bound[a], n, bound.get(b)) for k, a, n, b in specs]):
                break
        else:
            bound = self._first_open(world, agent)
            if bound is None:
                raise ActivityError(f"activity {self.name!r}: every binding here has a goal object "
                                    f"whose goal facts already hold")
            facts = [_fact(k, bound[a], n, bound.get(b)) for k, a, n, b in specs]
        # The planner may also have to switch off or open a container a bound node is in, and
        # clear what rests on a seat the agent must sit or lie on.
        extra = set(bound.values())
        for n in bound.values():
            extra |= world.out(n, R_INSIDE)
        for _, a, rel, b in specs:
            if a == AGENT and rel == "ON":
                extra |= world.inn(bound[b], R_ON)
        return _goal(self.name, facts, extra, sc.rooms | set(sc.characters), agent, "library")

    def _first_open(self, world, agent: int = 0) -> dict | None:
        """The first binding (in candidate order) that leaves work on every goal object, or None."""
        tokens, specs = self.classes(), self._specs()
        choices = [_candidates(world.scene, t) for t in tokens]
        for k, combo in enumerate(itertools.product(*choices)):
            if k >= _SEARCH_LIMIT:
                return None
            bound = {AGENT: world.agents[agent], **dict(zip(tokens, combo))}
            if _open(world, [_fact(kd, bound[a], n, bound.get(b)) for kd, a, n, b in specs]):
                return bound
        return None

    def poses(self, world, agent: int = 0) -> bool:
        """Whether a goal of this activity can be posed here: its classes exist and some binding
        leaves work on every goal object."""
        return (all(_candidates(world.scene, t) for t in self.classes())
                and agent < len(world.agents) and self._first_open(world, agent) is not None)


_DRAWS = 16
_SEARCH_LIMIT = 20_000


def _open(world, facts) -> bool:
    """Every goal object still has work: it is named by a goal fact that does not hold yet.

    A fact that already holds is fine when its objects are worked on anyway (the fridge is closed
    now, but the milk must go in it); an object only in holding facts ("the board game is on the
    table" already) would let the plan skip it, and the activity be done in name only.
    """
    chars = set(world.agents)
    rooms = world.scene.rooms
    todo = [f for f in facts if not f.holds(world)]
    objects = {n for f in facts for n in f.nodes()} - chars - rooms
    # Facing comes free with sitting down in front of a thing, so it is work on that thing only
    # when nothing else is asked of it ("look out the window", not "watch tv" with the tv on).
    asked = {n: [f for f in facts if n in f.nodes()] for n in objects}
    worked = {n for f in todo for n in f.nodes()
              if f.name != "FACING" or all(g.name == "FACING" for g in asked.get(n, ()))}
    return bool(todo) and objects <= worked


def fitting(world, activities=None, agent: int = 0) -> list["Activity"]:
    """The activities (default: the library and the held-out set) that can be posed in `world`."""
    return [a for a in (ALL_ACTIVITIES if activities is None else activities) if a.poses(world, agent)]


def _a(name: str, *goals: str, uses: tuple[str, ...] = ()) -> Activity:
    return Activity(name, goals, uses)


_SEAT = "couch|chair|bench"
_DISHES = "plate|bowl"
_GLASS = "water_glass|cup|mug"
_SHELF = "kitchen_cabinet|cupboard"
_MUG = "mug|cup"

ACTIVITIES: tuple[Activity, ...] = (
    # Living room and leisure.
    _a("watch tv", "television ON", "agent SITS couch|bed", "agent FACING television"),
    _a("change tv channel", "television ON", "agent HOLDS remote_control", "agent FACING television"),
    _a("relax on sofa", "agent LIES couch", "pillow ON couch"),
    _a("take a nap", "agent LIES couch|bed", "blanket ON couch|bed"),
    _a("read book", "agent HOLDS book|novel", "book|novel OPEN", f"agent SITS {_SEAT}"),
    _a("read newspaper", "agent HOLDS newspaper", "newspaper OPEN", f"agent SITS {_SEAT}"),
    _a("play board game", "board_game ON table|coffee_table", "agent SITS chair|couch"),
    _a("put away toys", "toy INSIDE closet|dresser", "closet|dresser CLOSED"),
    _a("have a beer", "agent HOLDS beer", "beer OPEN", f"agent SITS {_SEAT}"),
    _a("have a glass of wine", "agent HOLDS wine", "agent HOLDS water_glass|cup",
       f"agent SITS {_SEAT}"),
    _a("have a snack", "agent HOLDS food_apple|food_banana|food_bread|food_cheese",
       "agent SITS chair|couch"),
    # Trap: Open needs a free hand, so the book is opened before both hands are full.
    _a("read a book over tea", f"agent HOLDS {_MUG}", "agent HOLDS book|novel", "book|novel OPEN",
       "agent SITS couch|chair|bed"),
    # Trap: Sit counts what is ON a chair (it seats one), so sit first, then put the pillow on it.
    _a("sit on a cushion", "agent SITS chair", "pillow ON chair"),
    # Light, air and doors.
    _a("turn on light", "light ON"),
    _a("turn off light", "light OFF"),
    _a("turn on lamp", "lamp|floor_lamp ON"),
    _a("open curtains", "curtain OPEN"),
    _a("open window", "window OPEN"),
    _a("look out the window", "curtain OPEN", "agent FACING window"),
    _a("answer the door", "agent INSIDE entrance_hall", "door OPEN"),
    # Phone, computer and paperwork.
    _a("pick up phone", "agent HOLDS cellphone"),
    _a("make a phone call", "cellphone ON", "agent HOLDS cellphone"),
    _a("charge phone", "cellphone PLUGGED_IN", "cellphone ON nightstand|desk"),
    _a("work", "computer ON", "agent SITS chair", "agent FACING computer"),
    _a("browse internet", "computer ON", "agent HOLDS mouse", "agent FACING computer"),
    _a("write an email", "computer ON", "agent HOLDS keyboard", "agent SITS chair"),
    _a("use laptop", "laptop ON", "agent HOLDS laptop", "agent SITS couch|chair|bed"),
    _a("print document", "document|paper INSIDE printer", "printer ON"),
    _a("file documents", "document|paper|folder INSIDE filing_cabinet|cabinet",
       "filing_cabinet|cabinet CLOSED"),
    _a("study", "book|notebook ON desk", "book|notebook OPEN", "agent SITS chair"),
    _a("read mail", "agent HOLDS mail", "mail OPEN"),
    _a("set alarm", "alarm_clock ON", "alarm_clock ON nightstand"),
    # Kitchen.
    _a("put groceries in fridge",
       "food_apple|food_carrot|food_egg|food_steak|food_cheese INSIDE fridge",
       "milk|juice|beer INSIDE fridge", "fridge CLOSED"),
    _a("make coffee", "mug|cup ON coffe_maker", "coffe_maker ON"),
    _a("make tea", "kettle ON", "mug|cup ON kitchen_counter|table"),
    _a("boil water", "cookingpot ON stove", "stove ON"),
    _a("make toast", "food_bread INSIDE toaster", "toaster ON"),
    _a("cook some food", "food_steak|food_egg|food_carrot ON fryingpan|cookingpot",
       "fryingpan|cookingpot ON stove", "stove ON"),
    _a("heat food in microwave", f"{_DISHES}|mug INSIDE microwave", "microwave CLOSED",
       "microwave ON"),
    _a("bake in oven", "cookingpot|fryingpan INSIDE oven", "oven CLOSED", "oven ON"),
    _a("cut food", "food_bread|food_carrot|food_cheese|food_steak ON cutting_board",
       "agent HOLDS chef_knife|knife"),
    _a("eat cereal", "bowl ON table|kitchen_counter", "food_cereal ON table|kitchen_counter",
       "food_cereal OPEN"),
    _a("put fruit in bowl", "food_apple|food_banana INSIDE bowl"),
    _a("set up table", "plate ON table", "fork ON table", "spoon|knife ON table"),
    _a("serve drinks", "juice|wine|milk ON table", f"{_GLASS} ON table"),
    _a("get some water", f"agent HOLDS {_GLASS}", "faucet ON"),
    # Trap: Open refuses a machine that is ON, so what goes in a closed one goes in before it is on.
    _a("wash dishes with dishwasher", f"{_DISHES} INSIDE dishwasher", f"{_GLASS} INSIDE dishwasher",
       "dishwasher CLOSED", "dishwasher ON"),
    _a("wash dishes by hand", f"{_DISHES} CLEAN", "faucet ON", "agent HOLDS dish_soap",
       uses=("sink",)),
    _a("put away dishes", f"{_DISHES} INSIDE {_SHELF}", f"fork|spoon|knife INSIDE {_SHELF}"),
    _a("throw away paper", "newspaper|magazine|paper INSIDE garbage_can|trashcan",
       "garbage_can|trashcan CLOSED"),
    # Cleaning.
    _a("wipe kitchen counter", "kitchen_counter CLEAN"),
    _a("clean the table", "table|coffee_table CLEAN"),
    _a("clean toilet", "toilet CLEAN"),
    _a("clean bathtub", "bathtub CLEAN"),
    # Bathroom.
    _a("wash hands", "agent HOLDS soap", "faucet ON", uses=("sink",)),
    _a("brush teeth", "agent HOLDS toothbrush", "agent HOLDS tooth_paste", "tooth_paste OPEN",
       "faucet ON"),
    _a("wash hair", "agent HOLDS shampoo", "shampoo OPEN", "faucet ON"),
    _a("go to toilet", "toilet OPEN", "agent SITS toilet"),
    _a("take a bath", "agent HOLDS soap", "agent LIES bathtub"),
    _a("hang up towel", "towel ON towel_rack"),
    # Trap: as for the dishwasher; and the detergent is a second trip (it is kept in a cabinet).
    _a("wash clothes", "clothes_shirt|clothes_pants|clothes_socks INSIDE washing_machine",
       "laundry_detergent INSIDE washing_machine", "washing_machine CLOSED", "washing_machine ON"),
    # Bedroom, clothes and hall.
    _a("go to sleep", "agent LIES bed", "light OFF"),
    _a("get ready for bed", "agent WEARS pajamas", "agent LIES bed"),
    _a("make bed", "pillow ON bed", "blanket ON bed"),
    _a("read in bed", "agent HOLDS book|novel|magazine", "agent LIES bed"),
    _a("get dressed", "agent WEARS clothes_shirt", "agent WEARS clothes_pants"),
    _a("put on shoes", "agent WEARS shoes|slippers", "agent SITS bench|chair|bed"),
    _a("get ready to go out", "agent WEARS clothes_jacket", "agent WEARS shoes", "agent HOLDS keys"),
    _a("put away clothes", "clothes_shirt|clothes_pants|clothes_jacket INSIDE closet|dresser",
       "closet|dresser CLOSED"),
    _a("put shoes on shoe rack", "shoes|slippers ON shoe_rack"),
    _a("pack a bag", "keys INSIDE bag", "cellphone INSIDE bag", "bag CLOSED"),
    # Trap: PutIn refuses a closed bag, so it is closed only once both are in it.
    _a("pack clothes for a trip", "clothes_shirt|clothes_pants INSIDE bag", "clothes_socks INSIDE bag",
       "bag CLOSED", "agent HOLDS bag"),
)

# Held out of training: the "unseen" plan-generation suites ask for these. E2WM's unseen
# activities were RobotHow titles its training never saw; these are new goals over the same classes.
UNSEEN_ACTIVITIES: tuple[Activity, ...] = (
    _a("clean the bathroom counter", "bathroom_counter CLEAN"),
    _a("stock the pantry", "food_cereal|food_bread ON pantry", "food_apple|food_banana ON pantry"),
    _a("iron a shirt", "clothes_shirt ON ironing_board"),
    _a("brush hair", "agent HOLDS hairbrush", "agent FACING bathroom_counter|sink"),
    _a("write a note", "agent HOLDS pen", "notebook OPEN", "agent SITS chair"),
    _a("tidy the bookshelf", "book|novel ON bookshelf", "magazine ON bookshelf"),
    _a("put towels away", "towel INSIDE bathroom_cabinet|closet", "bathroom_cabinet|closet CLOSED"),
    _a("pour a glass of juice", "juice INSIDE water_glass|cup", "agent HOLDS water_glass|cup"),
    _a("put toilet paper on the counter", "toilet_paper ON bathroom_counter"),
    _a("put a pillow on the chair", "pillow ON chair|bench"),
    _a("turn off the tv", "television OFF", "agent HOLDS remote_control"),
    _a("put the phone on the desk", "cellphone ON desk", "agent SITS chair"),
    # Trap: Open refuses a stove that is ON (its oven), so the pot goes in before it is switched on.
    _a("bake a casserole", "cookingpot INSIDE stove", "stove CLOSED", "stove ON"),
    # Trap: Lie counts what is ON the couch (two fill it), so lie down first, then pillow and blanket.
    _a("curl up on the couch", "agent LIES couch", "pillow ON couch", "blanket ON couch"),
    # Trap: Open needs a free hand, so the newspaper is opened before both hands are full.
    _a("read the newspaper over coffee", f"agent HOLDS {_MUG}", "agent HOLDS newspaper",
       "newspaper OPEN", "agent SITS chair|couch"),
)
# Collection order: the held-out activities spread evenly through the library, so any run of
# consecutive plans holds some of both.
_EVERY = -(-len(ACTIVITIES) // len(UNSEEN_ACTIVITIES))
ALL_ACTIVITIES: tuple[Activity, ...] = tuple(
    a for i in range(len(UNSEEN_ACTIVITIES))
    for a in (*ACTIVITIES[i * _EVERY:(i + 1) * _EVERY], UNSEEN_ACTIVITIES[i])) + ACTIVITIES[
        len(UNSEEN_ACTIVITIES) * _EVERY:]
UNSEEN_NAMES = frozenset(a.name for a in UNSEEN_ACTIVITIES)

_BY_NAME = {a.name: a for a in ALL_ACTIVITIES}
if len(_BY_NAME) != len(ALL_ACTIVITIES):
    raise ActivityError("activity library: repeated names")


def library_digest() -> str:
    """A short hash of the library as collection reads it (names, goal specs, uses, held-out set, in
    rotation order): a collection job's identity, so a changed library is a different job."""
    rows = [[a.name, list(a.goals), list(a.uses), a.name in UNSEEN_NAMES] for a in ALL_ACTIVITIES]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:16]


def get_activity(name: str) -> Activity:
    """The library activity of that name (case and spacing ignored)."""
    key = " ".join(name.lower().split())
    if key in _BY_NAME:
        return _BY_NAME[key]
    close = difflib.get_close_matches(key, _BY_NAME, n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"{len(_BY_NAME)} are known"
    raise ActivityError(f"unknown activity {name!r}; {hint}")


def goal_from_graphs(init: dict, final: dict, activity: str, source: str, agent: int = 0,
                     extra_objects=()) -> Goal:
    """The goal as what `final` adds to `init` (VirtualHome graph dicts over the same nodes)."""
    nodes = {n["id"]: n for n in init["nodes"]}
    rooms = {i for i, n in nodes.items() if n.get("category") == ROOM_CATEGORY}
    chars = {i for i, n in nodes.items() if n["class_name"] == "character"}
    facts = []
    for n in final["nodes"]:
        before = {s.upper() for s in nodes.get(n["id"], {}).get("states", ())}
        facts += [Fact.state(n["id"], s) for s in sorted({s.upper() for s in n.get("states", ())} - before)]

    def key(e):
        return e["from_id"], e["relation_type"].upper(), e["to_id"]
    standing = []   # the character INSIDE a room: where it happens to stand, kept only if alone
    for a, r, b in {key(e) for e in final["edges"]} - {key(e) for e in init["edges"]}:
        if r in ("HOLDS_RH", "HOLDS_LH"):
            facts.append(Fact.holding(a, b))
        elif r == "INSIDE" and a in chars and b in rooms:
            standing.append(Fact.edge(a, r, b))
        elif r not in ("CLOSE", "FACING"):
            facts.append(Fact.edge(a, r, b))
    facts = facts or standing
    if not facts:
        raise ActivityError(f"activity {activity!r} ({source}): the final graph adds no goal fact, "
                            f"only CLOSE or FACING edges")
    unknown = {x for f in facts for x in f.nodes()} - nodes.keys()
    if unknown:
        raise ActivityError(f"activity {activity!r} ({source}): the final graph names nodes "
                            f"{sorted(unknown)} the initial graph lacks")
    return _goal(activity, facts, extra_objects, rooms | chars, agent, source)


def goal_from_program(program, agent: int = 0) -> Goal:
    """A RobotHow program's goal: its title (lower-cased) as the name, its script's nodes as objects."""
    g = program.graphs
    extra = {i for line in program.lines for i in line.ids}
    return goal_from_graphs(g["init_graph"], g["final_graph"], program.title.lower(),
                            f"robothow:{program.name}", agent, extra)


def initial_conditions(world, objects) -> list[Fact]:
    """Per object, in the order given: its OBJECT_STATES, its ON / INSIDE edges to non-room nodes,
    and its INSIDE edge to its room."""
    rooms = world.scene.rooms
    out = []
    for o in objects:
        out += [Fact.state(o, s) for s in OBJECT_STATES if world.states(o) & STATE_BIT[s]]
        for r in (R_ON, R_INSIDE):
            out += [Fact.edge(o, RELATIONS[r], x) for x in sorted(world.out(o, r) - rooms)]
        out += [Fact.edge(o, "INSIDE", x) for x in sorted(world.out(o, R_INSIDE) & rooms)]
    return out
