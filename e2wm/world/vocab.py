"""VirtualHome's vocabulary: actions, states, relations and properties, with the official names.

States and properties are bit flags so a node's set of them is one int; relations are small ints so
an edge index key is `node_id * 8 + relation`.
"""

# Executable actions (the official executor's 42) and their argument counts.
ACTION_ARITY: dict[str, int] = {
    "WALK": 1, "RUN": 1, "FIND": 1, "SIT": 1, "STANDUP": 0, "GRAB": 1, "OPEN": 1, "CLOSE": 1,
    "PUTBACK": 2, "PUTIN": 2, "PUTOBJBACK": 1, "SWITCHON": 1, "SWITCHOFF": 1, "DRINK": 1,
    "LOOKAT": 1, "TURNTO": 1, "WIPE": 1, "PUTON": 1, "PUTOFF": 1, "GREET": 1, "DROP": 1,
    "READ": 1, "POINTAT": 1, "TOUCH": 1, "LIE": 1, "POUR": 2, "TYPE": 1, "WATCH": 1, "PUSH": 1,
    "PULL": 1, "MOVE": 1, "WASH": 1, "RINSE": 1, "SCRUB": 1, "SQUEEZE": 1, "PLUGIN": 1,
    "PLUGOUT": 1, "CUT": 1, "EAT": 1, "SLEEP": 0, "WAKEUP": 0, "RELEASE": 1,
}

# How each action is written in a script line.
ACTION_NAMES: dict[str, str] = {
    "WALK": "Walk", "RUN": "Run", "FIND": "Find", "SIT": "Sit", "STANDUP": "StandUp",
    "GRAB": "Grab", "OPEN": "Open", "CLOSE": "Close", "PUTBACK": "PutBack", "PUTIN": "PutIn",
    "PUTOBJBACK": "PutObjBack", "SWITCHON": "SwitchOn", "SWITCHOFF": "SwitchOff",
    "DRINK": "Drink", "LOOKAT": "LookAt", "TURNTO": "TurnTo", "WIPE": "Wipe", "PUTON": "PutOn",
    "PUTOFF": "PutOff", "GREET": "Greet", "DROP": "Drop", "READ": "Read", "POINTAT": "PointAt",
    "TOUCH": "Touch", "LIE": "Lie", "POUR": "Pour", "TYPE": "Type", "WATCH": "Watch",
    "PUSH": "Push", "PULL": "Pull", "MOVE": "Move", "WASH": "Wash", "RINSE": "Rinse",
    "SCRUB": "Scrub", "SQUEEZE": "Squeeze", "PLUGIN": "PlugIn", "PLUGOUT": "PlugOut",
    "CUT": "Cut", "EAT": "Eat", "SLEEP": "Sleep", "WAKEUP": "WakeUp", "RELEASE": "Release",
}

# Parsed by the official parser but without an executor there; here they are LookAt.
ACTION_ALIASES: dict[str, str] = {
    "LOOKAT_SHORT": "LOOKAT", "LOOKAT_MEDIUM": "LOOKAT", "LOOKAT_LONG": "LOOKAT",
}

STATES = ("CLOSED", "OPEN", "ON", "OFF", "SITTING", "DIRTY", "CLEAN", "LYING",
          "PLUGGED_IN", "PLUGGED_OUT")
STATE_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(STATES)}
CLOSED, OPEN, ON_, OFF, SITTING, DIRTY, CLEAN, LYING, PLUGGED_IN, PLUGGED_OUT = (
    STATE_BIT[s] for s in STATES)

RELATIONS = ("ON", "INSIDE", "BETWEEN", "CLOSE", "FACING", "HOLDS_RH", "HOLDS_LH", "SITTING")
REL: dict[str, int] = {name: i for i, name in enumerate(RELATIONS)}
R_ON, R_INSIDE, R_BETWEEN, R_CLOSE, R_FACING, R_HOLDS_RH, R_HOLDS_LH, R_SITTING = range(8)

PROPERTIES = ("SURFACES", "GRABBABLE", "SITTABLE", "LIEABLE", "HANGABLE", "DRINKABLE",
              "EATABLE", "RECIPIENT", "CUTTABLE", "POURABLE", "CAN_OPEN", "HAS_SWITCH",
              "READABLE", "LOOKABLE", "CONTAINERS", "CLOTHES", "PERSON", "BODY_PART",
              "COVER_OBJECT", "HAS_PLUG", "HAS_PAPER", "MOVABLE", "CREAM")
PROP_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(PROPERTIES)}
(SURFACES, GRABBABLE, SITTABLE, LIEABLE, HANGABLE, DRINKABLE, EATABLE, RECIPIENT, CUTTABLE,
 POURABLE, CAN_OPEN, HAS_SWITCH, READABLE, LOOKABLE, CONTAINERS, CLOTHES, PERSON, BODY_PART,
 COVER_OBJECT, HAS_PLUG, HAS_PAPER, MOVABLE, CREAM) = (PROP_BIT[p] for p in PROPERTIES)

ROOM_NAMES = ("home_office", "kitchen", "living_room", "bathroom", "dining_room", "bedroom",
              "kids_bedroom", "entrance_hall")
ROOM_CATEGORY = "Rooms"


def state_names(bits: int) -> list[str]:
    return [s for s in STATES if bits & STATE_BIT[s]]


def property_names(bits: int) -> list[str]:
    return [p for p in PROPERTIES if bits & PROP_BIT[p]]
