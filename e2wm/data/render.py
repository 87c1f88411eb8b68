"""The natural-language renderer: script lines, goal facts and exploration steps as English.

Every text E2WM trains on comes from here, in the released data's style:
  plan        "Walk to dining room. Walk to microwave. Open microwave."   (`plan_text`)
  conditions  "The microwave is off. The freezer is in the dining room."  (`conditions_text`)
  items       ["freezer", "dining room", "microwave"]                     (`items`)
  goals       "the television is on", "you hold the mug"                  (`goal_phrase`)
  stories     "Davis journeyed to the home office. Anna took the hat."    (`Narrator`)

Class names come from the `<class> (id)` labels in script lines and fact texts; a `names` mapping
({str(id): class}, an episode's `names`) given to a function takes precedence over the label.
All randomness (agent names, verb synonyms) is drawn from a `random.Random` the caller passes in.
"""
from __future__ import annotations

import random
import re

from e2wm.errors import E2WMError
from e2wm.world.facts import Fact
from e2wm.world.script import parse_line
from e2wm.world.vocab import ROOM_NAMES

ROOMS = frozenset(ROOM_NAMES) | {"bathroom", "bedroom", "dining_room", "home_office", "kitchen",
                                 "living_room"}
CHARACTER = "character"

# VirtualHome spellings that underscores-to-spaces alone gets wrong.
_NOUNS = {
    "coffe_maker": "coffee maker", "cellphone": "cell phone", "tooth_paste": "toothpaste",
    "cookingpot": "cooking pot", "fryingpan": "frying pan", "trashcan": "trash can",
    "tvstand": "tv stand", "wallshelf": "wall shelf", "facecream": "face cream",
    "hairproduct": "hair product", "washingsponge": "washing sponge",
    "dishwashingliquid": "dishwashing liquid", "food_food": "food", "clothes_pile": "clothes pile",
}


def _forms(spec: str) -> tuple[str, str]:
    """A spec "Verb / verbed" -> ("Verb {0}.", "verbed the {0}"); one whose plan sentence ends with its
    period is both forms as they are."""
    plan, story = spec.split(" / ")
    return (plan, story) if plan.endswith(".") else (f"{plan} {{0}}.", f"{story} the {{0}}")


# Action -> (imperative plan sentence, past-tense story predicate); {0}, {1} are the arguments' nouns.
_FORMS = {action: _forms(spec) for action, spec in {
    "WALK": "Walk to / walked to", "RUN": "Run to / ran to", "FIND": "Find / found", "GRAB": "Grab / took",
    "PUTBACK": "Put {0} on {1}. / put the {0} on the {1}",
    "PUTIN": "Put {0} in {1}. / put the {0} in the {1}", "PUTOBJBACK": "Put {0} back. / put the {0} back",
    "OPEN": "Open / opened", "CLOSE": "Close / closed", "SWITCHON": "Switch on / switched on",
    "SWITCHOFF": "Switch off / switched off", "PLUGIN": "Plug in / plugged in",
    "PLUGOUT": "Unplug / unplugged", "SIT": "Sit on / sat on", "LIE": "Lie on / lay on",
    "STANDUP": "Stand up. / stood up", "TURNTO": "Turn to / turned to", "LOOKAT": "Look at / looked at",
    "POINTAT": "Point at / pointed at", "WIPE": "Wipe / wiped", "RINSE": "Rinse / rinsed",
    "WASH": "Wash / washed", "SCRUB": "Scrub / scrubbed", "PUTON": "Put on / put on",
    "PUTOFF": "Take off / took off", "DROP": "Drop / dropped", "RELEASE": "Drop / dropped",
    "POUR": "Pour {0} into {1}. / poured the {0} into the {1}", "DRINK": "Drink / drank from",
    "EAT": "Eat / ate", "READ": "Read / read", "WATCH": "Watch / watched", "TYPE": "Type on / typed on",
    "TOUCH": "Touch / touched", "PUSH": "Push / pushed", "PULL": "Pull / pulled", "MOVE": "Move / moved",
    "SQUEEZE": "Squeeze / squeezed", "CUT": "Cut / cut", "GREET": "Greet / greeted",
    "SLEEP": "Sleep. / slept", "WAKEUP": "Wake up. / woke up",
}.items()}

# The imperative plan sentence of each action; `e2wm.data.plan_parse` reads plans back through it.
PLAN_FORMS = {action: forms[0] for action, forms in _FORMS.items()}

_STATES = {"ON": "on", "OFF": "off", "OPEN": "open", "CLOSED": "closed", "PLUGGED_IN": "plugged in",
           "PLUGGED_OUT": "unplugged", "CLEAN": "clean", "DIRTY": "dirty"}
# What a character's own fact means, as a goal phrase ("you ..."); the rest are not goals one states.
_YOU_STATES = {"SITTING": "you sit", "LYING": "you lie down"}
_YOU_EDGES = {"HOLDS": "you hold the {0}", "HOLDS_RH": "you hold the {0}",
              "HOLDS_LH": "you hold the {0}", "SITTING": "you sit on the {0}",
              "ON": "you are on the {0}", "INSIDE": "you are in the {0}",
              "CLOSE": "you are close to the {0}", "FACING": "you face the {0}"}

_LABEL = re.compile(r"<([^<>]+)> \((-?\d+)\)")

# (first name, pronoun) for story agents.
PEOPLE = (
    ("Anna", "she"), ("Ben", "he"), ("Carla", "she"), ("Davis", "he"), ("Emma", "she"),
    ("Frank", "he"), ("Grace", "she"), ("Henry", "he"), ("Irene", "she"), ("Jason", "he"),
    ("Kate", "she"), ("Leo", "he"), ("Mary", "she"), ("Nick", "he"), ("Olivia", "she"),
    ("Paul", "he"), ("Rachel", "she"), ("Sam", "he"), ("Sarah", "she"), ("Tom", "he"),
    ("Uma", "she"), ("Victor", "he"), ("Wendy", "she"), ("Daniel", "he"), ("Julie", "she"),
    ("Mark", "he"), ("Lucy", "she"), ("Peter", "he"), ("Sue", "she"), ("John", "he"),
)
ROOM_VERBS = ("went to", "moved to", "walked into", "travelled to", "journeyed to", "entered")
GRAB_VERBS = ("took", "picked up", "grabbed", "got")
DROP_VERBS = ("dropped", "left", "put down", "discarded")


def noun(class_name: str) -> str:
    """A readable name for a VirtualHome class: `coffe_maker` -> "coffee maker", `food_apple` ->
    "apple", `clothes_shirt` -> "shirt", `dining_room` -> "dining room"."""
    name = class_name.strip().lower()
    if name in _NOUNS:
        return _NOUNS[name]
    for prefix in ("food_", "clothes_"):
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix):]
    return name.replace("_", " ")


def is_room(class_name: str) -> bool:
    return class_name in ROOMS


def sentence(line: str, names: dict | None = None) -> str:
    """One script line as an imperative plan sentence: `[PutIn] <mug> (1) <fridge> (2)` ->
    "Put mug in fridge."."""
    sl = parse_line(line)
    return PLAN_FORMS[sl.action].format(*(noun(_cls(a.name, a.id, names)) for a in sl.args))


def plan_text(lines, names: dict | None = None) -> str:
    return " ".join(sentence(l, names) for l in lines)


def condition(fact_text: str, names: dict | None = None) -> str | None:
    """A fact as an E2WM condition sentence ("The microwave is off.", "The mug is on the table.",
    "The freezer is in the dining room."), or None for a fact that is no condition of the world's
    objects: any fact about a character (holding, sitting, where it is) and CLOSE, FACING, BETWEEN."""
    phrase = _object_phrase(fact_text, names)
    return phrase[0].upper() + phrase[1:] + "." if phrase else None


def conditions_text(fact_texts, names: dict | None = None) -> str:
    return " ".join(c for c in (condition(t, names) for t in fact_texts) if c)


def goal_phrase(fact_text: str, names: dict | None = None) -> str | None:
    """A short lower-case goal phrase: "the television is on", "the mug is inside the microwave",
    and for the character's own facts "you hold the mug", "you sit on the couch"; None for an
    object fact with no condition sentence (CLOSE, FACING, BETWEEN between objects)."""
    f, a, b = _parse_fact(fact_text, names)
    if a == CHARACTER:
        phrase = (_YOU_STATES if f.kind == "state" else _YOU_EDGES).get(f.name)
        return phrase.format(noun(b or "")) if phrase else None
    return _object_phrase(fact_text, names)


def items(fact_texts, lines=(), names: dict | None = None) -> list[str]:
    """The distinct nouns named by the facts, then by the script lines, in first-mention order
    (rooms included, characters not): the given-items list of a plan prompt."""
    seen = {}
    classes = [c for t in fact_texts for c in _parse_fact(t, names)[1:] if c]
    classes += [_cls(a.name, a.id, names) for l in lines for a in parse_line(l).args]
    for c in classes:
        if c != CHARACTER:
            seen.setdefault(noun(c))
    return list(seen)


class Narrator:
    """Third-person, bAbI-style sentences for one exploration episode's steps, in order.

    Each agent index gets a distinct first name (and pronoun) drawn from `rng`; every sentence draws
    its verb synonym from `rng` too, so the same seed and the same calls give the same story.
    The narrator tracks each agent's room itself: it starts unknown, so an agent's first walk names
    its room. A caller replays the episode and asks for each step in turn:

        w, n = World.from_dict(scene), Narrator(rng, ep.agents)
        for s in ep.steps:
            text = n.narrate(s, ep.names, w.room_of)   # before or after w.step(s["line"], s["agent"])
            w.step(s["line"], s["agent"])

    `room_of(node_id) -> room id | None` is only asked about a walk's target, which stays put during
    the walk, so it may see the world before or after the step. `names` must name the rooms.
    """

    def __init__(self, rng: random.Random, n_agents: int):
        if not 1 <= n_agents <= len(PEOPLE):
            raise E2WMError(f"narrator: n_agents must be 1..{len(PEOPLE)}, got {n_agents}")
        self.rng = rng
        self.people = rng.sample(PEOPLE, n_agents)
        self.room: list[int | None] = [None] * n_agents

    def name(self, agent: int) -> str:
        return self.people[agent][0]

    def pronoun(self, agent: int) -> str:
        return self.people[agent][1]

    def narrate(self, step: dict, names: dict, room_of) -> str | None:
        """One step as a sentence, or None when it tells nothing a story needs: a failed line, or a
        Walk/Run to something in the agent's current room (stories only track rooms)."""
        if not step["ok"]:
            return None
        agent, sl = step["agent"], parse_line(step["line"])
        nouns = [noun(_cls(a.name, a.id, names)) for a in sl.args]
        who, pick = self.name(agent), self.rng.choice
        if sl.action in ("WALK", "RUN", "FIND"):
            target = sl.args[0]
            room = target.id if is_room(_cls(target.name, target.id, names)) else room_of(target.id)
            if room is not None and room != self.room[agent]:
                self.room[agent] = room
                return f"{who} {pick(ROOM_VERBS)} the {noun(names[str(room)])}."
            if sl.action != "FIND":
                return None
        if sl.action == "GRAB":
            return f"{who} {pick(GRAB_VERBS)} the {nouns[0]}."
        if sl.action in ("DROP", "RELEASE"):
            return f"{who} {pick(DROP_VERBS)} the {nouns[0]}."
        return f"{who} {_FORMS[sl.action][1].format(*nouns)}."


def _cls(label_class: str, node: int, names: dict | None) -> str:
    return names.get(str(node), label_class) if names else label_class


def _parse_fact(text: str, names: dict | None) -> tuple[Fact, str, str | None]:
    """The fact and the class names of its first and (None for a state) second node."""
    f = Fact.parse(text)
    labels = dict((int(i), c) for c, i in _LABEL.findall(text))
    a = _cls(labels[f.a], f.a, names)
    return f, a, None if f.kind == "state" else _cls(labels[f.b], f.b, names)


def _object_phrase(fact_text: str, names: dict | None) -> str | None:
    f, a, b = _parse_fact(fact_text, names)
    if a == CHARACTER:
        return None
    if f.kind == "state":
        return f"the {noun(a)} is {_STATES[f.name]}" if f.name in _STATES else None
    if f.name == "ON":
        return f"the {noun(a)} is on the {noun(b)}"
    if f.name == "INSIDE":
        return f"the {noun(a)} is {'in' if is_room(b) else 'inside'} the {noun(b)}"
    return None
