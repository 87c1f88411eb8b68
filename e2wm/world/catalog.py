"""The class catalog: a curated, hand-written subset of VirtualHome's object classes.

Names and property sets are VirtualHome's own (eai-eval's `properties_data.json`); small objects go
where VirtualHome's `object_script_placing.json` puts them, restricted to the furniture listed here.
`tests/world/test_catalog.py` checks both against those files.
"""
from __future__ import annotations

from dataclasses import dataclass

# A property that gives a node a two-valued state: a scene node holds exactly one of the pair.
# Switch first: whether a node starts ON decides which of the other states it may take.
STATE_PAIRS: dict[str, tuple[str, str]] = {
    "HAS_SWITCH": ("OFF", "ON"),
    "CAN_OPEN": ("CLOSED", "OPEN"),
    "HAS_PLUG": ("PLUGGED_IN", "PLUGGED_OUT"),
}
CLEANLINESS = ("CLEAN", "DIRTY")
# The engine will not open a thing that is ON, and an unplugged thing cannot be ON, so a node
# that starts ON starts closed and plugged in.
EXCLUDED_BY_ON = frozenset({"OPEN", "PLUGGED_OUT"})


@dataclass(frozen=True)
class ClassInfo:
    name: str
    category: str
    properties: frozenset[str]
    states: tuple[str, ...] = ()                      # states a new node of this class may start in
    rooms: tuple[str, ...] = ()                       # furniture: rooms it may stand in
    placements: tuple[tuple[str, str], ...] = ()      # small object: (ON | INSIDE, furniture class)


def _table(text: str) -> list[list[str]]:
    """The rows of a text table, each split at `|` into its cells: a line starting with `#` is a
    comment, an indented one continues the row above."""
    rows: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith(" "):
            rows[-1] += " " + line.strip()
        elif not line.startswith("#"):
            rows.append(line)
    return [[cell.strip() for cell in row.split("|")] for row in rows]


def _furniture(head: str, properties: str, states: str, rooms: str) -> ClassInfo:
    name, category = head.split()
    return ClassInfo(name, category, frozenset(properties.split()), tuple(states.split()),
                     rooms=tuple(rooms.split()))


def _object(name: str, properties: str, states: str, on: str, inside: str = "") -> ClassInfo:
    placements = tuple(("ON", f) for f in on.split()) + tuple(("INSIDE", f) for f in inside.split())
    return ClassInfo(name, "placable_objects", frozenset(properties.split()), tuple(states.split()),
                     placements=placements)


_ROOM_NAMES = ("bathroom", "bedroom", "kitchen", "living_room", "dining_room", "home_office",
               "kids_bedroom", "entrance_hall")
_ROOMS = [ClassInfo(name, "Rooms", frozenset(), ("CLEAN",)) for name in _ROOM_NAMES]

_SPECIAL = [
    ClassInfo("character", "Characters", frozenset()),
    ClassInfo("door", "Doors", frozenset({"CAN_OPEN"}), ("CLOSED", "OPEN", "CLEAN")),
]

_CLEANABLE = "CLEAN DIRTY"
_BEDROOMS = "bedroom kids_bedroom"
_ALL_ROOMS = " ".join(_ROOM_NAMES)
_APPLIANCE = "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG"

# name category | properties | states a new one may start in | rooms it may stand in
_FURNITURE = [_furniture(*row) for row in _table(f"""
bathroom_cabinet Furniture | SURFACES CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN DIRTY | bathroom
bathroom_counter Furniture | SURFACES | {_CLEANABLE} | bathroom
bathtub Furniture | SITTABLE LIEABLE | {_CLEANABLE} | bathroom
bed Furniture | SURFACES SITTABLE LIEABLE | {_CLEANABLE} | {_BEDROOMS}
bench Furniture | SURFACES SITTABLE LIEABLE MOVABLE | {_CLEANABLE} | dining_room entrance_hall
bookshelf Furniture | SURFACES CONTAINERS | {_CLEANABLE} | living_room home_office bedroom kids_bedroom
cabinet Furniture | SURFACES CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN DIRTY
    | living_room dining_room home_office entrance_hall
chair Furniture | SURFACES GRABBABLE SITTABLE MOVABLE | {_CLEANABLE}
    | kitchen dining_room home_office bedroom kids_bedroom
closet Furniture | CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN | bedroom kids_bedroom entrance_hall
coffee_table Furniture | SURFACES MOVABLE | {_CLEANABLE} | living_room
couch Furniture | SURFACES SITTABLE LIEABLE MOVABLE | {_CLEANABLE} | living_room home_office
cupboard Furniture | CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN | kitchen dining_room
desk Furniture | SURFACES CAN_OPEN MOVABLE | CLOSED OPEN CLEAN DIRTY | home_office bedroom kids_bedroom
dresser Furniture | CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN | {_BEDROOMS}
faucet Furniture | HAS_SWITCH | OFF ON CLEAN | kitchen bathroom
filing_cabinet Furniture | SURFACES CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN | home_office
garbage_can Furniture | CAN_OPEN CONTAINERS MOVABLE | CLOSED OPEN CLEAN DIRTY | kitchen
ironing_board Furniture | SURFACES MOVABLE | CLEAN | bedroom
kitchen_cabinet Furniture | SURFACES CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN DIRTY | kitchen
kitchen_counter Furniture | SURFACES | {_CLEANABLE} | kitchen
nightstand Furniture | SURFACES CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN | {_BEDROOMS}
pantry Furniture | SURFACES | CLEAN | kitchen
shoe_rack Furniture | SURFACES GRABBABLE MOVABLE | {_CLEANABLE} | entrance_hall kids_bedroom
sink Furniture | RECIPIENT CONTAINERS | {_CLEANABLE} | kitchen bathroom
table Furniture | SURFACES MOVABLE | {_CLEANABLE} | kitchen dining_room living_room
toilet Furniture | SITTABLE CAN_OPEN CONTAINERS | CLOSED OPEN CLEAN DIRTY | bathroom
towel_rack Furniture | SURFACES GRABBABLE MOVABLE | CLEAN | bathroom
trashcan Furniture | CAN_OPEN CONTAINERS MOVABLE | CLOSED OPEN CLEAN DIRTY | bathroom home_office kids_bedroom
carpet Decor | SURFACES MOVABLE | {_CLEANABLE} | living_room kids_bedroom
curtain Decor | CAN_OPEN COVER_OBJECT MOVABLE | CLOSED OPEN CLEAN | living_room bedroom
mat Decor | SURFACES GRABBABLE SITTABLE LIEABLE MOVABLE | {_CLEANABLE} | bathroom entrance_hall
window Windows | CAN_OPEN | CLOSED OPEN CLEAN DIRTY
    | living_room bedroom kitchen home_office kids_bedroom dining_room
floor_lamp Lamps | HAS_SWITCH MOVABLE | OFF ON CLEAN | living_room bedroom home_office
lamp Lamps | HAS_SWITCH HAS_PLUG | OFF ON PLUGGED_IN PLUGGED_OUT CLEAN | {_BEDROOMS}
light Electronics | HAS_SWITCH HAS_PLUG | OFF ON PLUGGED_IN CLEAN | {_ALL_ROOMS}
television Electronics | HAS_SWITCH LOOKABLE HAS_PLUG | OFF ON PLUGGED_IN PLUGGED_OUT CLEAN
    | living_room bedroom
computer Electronics | HAS_SWITCH LOOKABLE | OFF ON CLEAN | home_office
printer Electronics | {_APPLIANCE} | CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN | home_office
# VirtualHome will not open anything that is ON, so a fridge or freezer starts OFF to be usable.
fridge Appliances | {_APPLIANCE} | CLOSED OPEN OFF PLUGGED_IN CLEAN DIRTY | kitchen
freezer Appliances | {_APPLIANCE} | CLOSED OPEN OFF PLUGGED_IN CLEAN | kitchen
microwave Appliances | {_APPLIANCE} | CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN DIRTY | kitchen
oven Appliances | {_APPLIANCE} | CLOSED OPEN OFF ON PLUGGED_IN CLEAN DIRTY | kitchen
stove Appliances | SURFACES CAN_OPEN HAS_SWITCH CONTAINERS | CLOSED OPEN OFF ON CLEAN DIRTY | kitchen
dishwasher Appliances | CAN_OPEN HAS_SWITCH CONTAINERS | CLOSED OPEN OFF ON CLEAN | kitchen
coffe_maker Appliances | RECIPIENT {_APPLIANCE} MOVABLE
    | CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN DIRTY | kitchen
toaster Appliances | HAS_SWITCH CONTAINERS HAS_PLUG MOVABLE | OFF ON PLUGGED_IN PLUGGED_OUT CLEAN | kitchen
washing_machine Appliances | RECIPIENT {_APPLIANCE} | CLOSED OPEN OFF ON PLUGGED_IN CLEAN | bathroom
""")]

_DISH = "GRABBABLE RECIPIENT POURABLE MOVABLE"
_CUTLERY = "GRABBABLE MOVABLE"
_PRODUCE = "GRABBABLE EATABLE CUTTABLE MOVABLE"
_CLOTHES = "GRABBABLE HANGABLE CLOTHES MOVABLE"
_BOOK = "GRABBABLE CUTTABLE CAN_OPEN READABLE HAS_PAPER MOVABLE"
_KITCHEN_SHELVES = "kitchen_cabinet cupboard"
_FRIDGES = "fridge freezer"
_READING_SPOTS = "coffee_table couch desk bookshelf table"

# name | properties | states a new one may start in | furniture it may be ON | furniture it may be INSIDE
_OBJECTS = [_object(*row) for row in _table(f"""
# Kitchenware.
cup | {_DISH} | {_CLEANABLE} | kitchen_counter table desk nightstand | {_KITCHEN_SHELVES} dishwasher
mug | {_DISH} | {_CLEANABLE} | kitchen_counter table desk coffee_table | {_KITCHEN_SHELVES} dishwasher
water_glass | {_DISH} | {_CLEANABLE} | kitchen_counter table nightstand bathroom_counter
    | {_KITCHEN_SHELVES} dishwasher
plate | SURFACES GRABBABLE RECIPIENT MOVABLE | {_CLEANABLE} | kitchen_counter table
    | {_KITCHEN_SHELVES} dishwasher sink microwave
bowl | GRABBABLE RECIPIENT MOVABLE | {_CLEANABLE} | kitchen_counter table coffee_table
    | {_KITCHEN_SHELVES} dishwasher
fork | {_CUTLERY} | {_CLEANABLE} | kitchen_counter table | kitchen_cabinet dishwasher sink
spoon | {_CUTLERY} | {_CLEANABLE} | kitchen_counter table | {_KITCHEN_SHELVES} dishwasher sink
knife | {_CUTLERY} | {_CLEANABLE} | kitchen_counter table | kitchen_cabinet dishwasher
chef_knife | {_CUTLERY} | {_CLEANABLE} | kitchen_counter | {_KITCHEN_SHELVES} dishwasher
cutting_board | SURFACES GRABBABLE MOVABLE | {_CLEANABLE} | kitchen_counter table | {_KITCHEN_SHELVES}
fryingpan | GRABBABLE RECIPIENT MOVABLE | {_CLEANABLE} | stove kitchen_counter | {_KITCHEN_SHELVES} dishwasher
cookingpot | GRABBABLE RECIPIENT CAN_OPEN MOVABLE | CLOSED OPEN CLEAN DIRTY | stove kitchen_counter
    | {_KITCHEN_SHELVES} oven
kettle | GRABBABLE RECIPIENT HAS_SWITCH HAS_PLUG MOVABLE | OFF PLUGGED_IN PLUGGED_OUT CLEAN
    | kitchen_counter stove
dish_soap | GRABBABLE POURABLE MOVABLE CREAM | CLEAN | kitchen_counter | cupboard sink
# Food and drink.
food_apple | {_PRODUCE} | CLEAN | kitchen_counter table pantry | fridge
food_banana | {_PRODUCE} | CLEAN | kitchen_counter table pantry
food_bread | {_PRODUCE} | CLEAN | kitchen_counter table pantry | {_KITCHEN_SHELVES} fridge
food_carrot | {_PRODUCE} | CLEAN | kitchen_counter pantry | {_FRIDGES}
food_egg | {_PRODUCE} | CLEAN | kitchen_counter | fridge
food_steak | {_PRODUCE} | CLEAN | kitchen_counter | {_FRIDGES}
food_cheese | GRABBABLE EATABLE CUTTABLE MOVABLE CREAM | CLEAN | kitchen_counter | fridge
food_cereal | GRABBABLE EATABLE POURABLE CAN_OPEN MOVABLE | CLOSED OPEN CLEAN | kitchen_counter pantry
    | {_KITCHEN_SHELVES}
milk | GRABBABLE DRINKABLE POURABLE CAN_OPEN MOVABLE | CLOSED OPEN CLEAN | kitchen_counter table | fridge
juice | GRABBABLE DRINKABLE POURABLE MOVABLE | CLEAN | kitchen_counter table pantry | fridge
wine | GRABBABLE DRINKABLE POURABLE MOVABLE | CLEAN | kitchen_counter table coffee_table | fridge cupboard
beer | GRABBABLE DRINKABLE POURABLE CAN_OPEN MOVABLE | CLOSED OPEN CLEAN | kitchen_counter table coffee_table
    | {_FRIDGES}
# Living room.
remote_control | GRABBABLE HAS_SWITCH MOVABLE | OFF ON CLEAN | coffee_table couch table bed
book | {_BOOK} | CLOSED OPEN CLEAN | {_READING_SPOTS} nightstand | cabinet
magazine | GRABBABLE CAN_OPEN READABLE HAS_PAPER MOVABLE | CLOSED OPEN CLEAN | {_READING_SPOTS}
newspaper | GRABBABLE CAN_OPEN READABLE COVER_OBJECT HAS_PAPER MOVABLE | CLOSED OPEN CLEAN
    | coffee_table couch desk table
pillow | GRABBABLE MOVABLE | {_CLEANABLE} | couch bed bench chair
blanket | GRABBABLE HANGABLE COVER_OBJECT MOVABLE | {_CLEANABLE} | couch bed | closet
cellphone | GRABBABLE HAS_SWITCH HAS_PLUG MOVABLE | OFF ON PLUGGED_IN PLUGGED_OUT CLEAN
    | couch desk nightstand table
board_game | SURFACES GRABBABLE LOOKABLE MOVABLE | CLEAN | table | cabinet closet
laptop | GRABBABLE HAS_SWITCH LOOKABLE HAS_PLUG MOVABLE | OFF ON PLUGGED_IN PLUGGED_OUT CLEAN
    | desk coffee_table couch table
# Bedroom and wardrobe.
clothes_shirt | {_CLOTHES} | {_CLEANABLE} | couch ironing_board | closet dresser washing_machine
clothes_pants | {_CLOTHES} | {_CLEANABLE} | couch ironing_board | closet dresser washing_machine
clothes_jacket | {_CLOTHES} | {_CLEANABLE} | couch | closet dresser
clothes_socks | {_CLOTHES} | {_CLEANABLE} | shoe_rack | dresser closet washing_machine
pajamas | GRABBABLE CLOTHES MOVABLE | {_CLEANABLE} | bed | dresser closet
slippers | {_CLOTHES} | {_CLEANABLE} | shoe_rack | closet
shoes | GRABBABLE CLOTHES MOVABLE | {_CLEANABLE} | shoe_rack bench | closet
alarm_clock | GRABBABLE HAS_SWITCH LOOKABLE HAS_PLUG MOVABLE | OFF ON PLUGGED_IN CLEAN | nightstand table
novel | {_BOOK} | CLOSED OPEN CLEAN | bookshelf couch table | dresser cabinet
toy | GRABBABLE MOVABLE | {_CLEANABLE} | carpet couch shoe_rack
# Bathroom.
toothbrush | GRABBABLE RECIPIENT MOVABLE | {_CLEANABLE} | bathroom_counter | bathroom_cabinet
tooth_paste | GRABBABLE POURABLE CAN_OPEN MOVABLE CREAM | CLOSED OPEN CLEAN | bathroom_counter
    | bathroom_cabinet
soap | GRABBABLE MOVABLE CREAM | CLEAN | bathroom_counter kitchen_counter | bathroom_cabinet
shampoo | GRABBABLE POURABLE CAN_OPEN MOVABLE | CLOSED OPEN CLEAN | bathroom_counter | bathroom_cabinet
towel | GRABBABLE COVER_OBJECT MOVABLE | {_CLEANABLE} | towel_rack bathroom_counter
    | bathroom_cabinet washing_machine
hairbrush | GRABBABLE MOVABLE | {_CLEANABLE} | bathroom_counter | bathroom_cabinet dresser
toilet_paper | GRABBABLE HANGABLE CUTTABLE COVER_OBJECT HAS_PAPER MOVABLE | CLEAN | bathroom_counter
    | bathroom_cabinet
laundry_detergent | GRABBABLE POURABLE MOVABLE | CLEAN |  | washing_machine cabinet
# Office, study and hall.
mouse | GRABBABLE HAS_PLUG MOVABLE | PLUGGED_IN PLUGGED_OUT CLEAN | desk
keyboard | GRABBABLE HAS_PLUG MOVABLE | PLUGGED_IN PLUGGED_OUT CLEAN | desk
pen | GRABBABLE MOVABLE | CLEAN | desk table bookshelf | dresser cabinet
notebook | {_BOOK} | CLOSED OPEN CLEAN | desk bookshelf table | filing_cabinet
paper | GRABBABLE CUTTABLE READABLE HAS_PAPER MOVABLE | CLEAN | desk bookshelf table | filing_cabinet
document | GRABBABLE READABLE HAS_PAPER MOVABLE | CLEAN | desk bookshelf | filing_cabinet cabinet
folder | GRABBABLE CAN_OPEN READABLE CONTAINERS HAS_PAPER MOVABLE | CLOSED OPEN CLEAN | desk bookshelf
    | filing_cabinet
mail | GRABBABLE CAN_OPEN READABLE HAS_PAPER MOVABLE | CLOSED OPEN CLEAN | bench shoe_rack desk table
keys | GRABBABLE MOVABLE | CLEAN | bench desk nightstand | dresser
bag | GRABBABLE RECIPIENT CAN_OPEN CONTAINERS COVER_OBJECT MOVABLE | CLOSED OPEN CLEAN
    | bench chair shoe_rack couch
""")]

CATALOG: dict[str, ClassInfo] = {c.name: c for c in _ROOMS + _SPECIAL + _FURNITURE + _OBJECTS}
ROOM_CLASSES: tuple[str, ...] = _ROOM_NAMES
FURNITURE_CLASSES: tuple[str, ...] = tuple(c.name for c in _FURNITURE)
OBJECT_CLASSES: tuple[str, ...] = tuple(c.name for c in _OBJECTS)


def furniture_for(room: str) -> tuple[str, ...]:
    """Furniture classes that may stand in `room`, in catalog order."""
    return tuple(name for name in FURNITURE_CLASSES if room in CATALOG[name].rooms)
