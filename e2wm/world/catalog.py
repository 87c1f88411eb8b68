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


def _furniture(name: str, category: str, properties: str, states: str, rooms: str) -> ClassInfo:
    return ClassInfo(name, category, frozenset(properties.split()), tuple(states.split()),
                     rooms=tuple(rooms.split()))


def _object(name: str, properties: str, states: str, on: str = "", inside: str = "") -> ClassInfo:
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

_FURNITURE = [
    _furniture("bathroom_cabinet", "Furniture", "SURFACES CAN_OPEN CONTAINERS",
               "CLOSED OPEN CLEAN DIRTY", "bathroom"),
    _furniture("bathroom_counter", "Furniture", "SURFACES", _CLEANABLE, "bathroom"),
    _furniture("bathtub", "Furniture", "SITTABLE LIEABLE", _CLEANABLE, "bathroom"),
    _furniture("bed", "Furniture", "SURFACES SITTABLE LIEABLE", _CLEANABLE, _BEDROOMS),
    _furniture("bench", "Furniture", "SURFACES SITTABLE LIEABLE MOVABLE", _CLEANABLE,
               "dining_room entrance_hall"),
    _furniture("bookshelf", "Furniture", "SURFACES CONTAINERS", _CLEANABLE,
               "living_room home_office bedroom kids_bedroom"),
    _furniture("cabinet", "Furniture", "SURFACES CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN DIRTY",
               "living_room dining_room home_office entrance_hall"),
    _furniture("chair", "Furniture", "SURFACES GRABBABLE SITTABLE MOVABLE", _CLEANABLE,
               "kitchen dining_room home_office bedroom kids_bedroom"),
    _furniture("closet", "Furniture", "CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN",
               "bedroom kids_bedroom entrance_hall"),
    _furniture("coffee_table", "Furniture", "SURFACES MOVABLE", _CLEANABLE, "living_room"),
    _furniture("couch", "Furniture", "SURFACES SITTABLE LIEABLE MOVABLE", _CLEANABLE,
               "living_room home_office"),
    _furniture("cupboard", "Furniture", "CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN",
               "kitchen dining_room"),
    _furniture("desk", "Furniture", "SURFACES CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN DIRTY",
               "home_office bedroom kids_bedroom"),
    _furniture("dresser", "Furniture", "CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN", _BEDROOMS),
    _furniture("faucet", "Furniture", "HAS_SWITCH", "OFF ON CLEAN", "kitchen bathroom"),
    _furniture("filing_cabinet", "Furniture", "SURFACES CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN",
               "home_office"),
    _furniture("garbage_can", "Furniture", "CAN_OPEN CONTAINERS MOVABLE", "CLOSED OPEN CLEAN DIRTY",
               "kitchen"),
    _furniture("ironing_board", "Furniture", "SURFACES MOVABLE", "CLEAN", "bedroom"),
    _furniture("kitchen_cabinet", "Furniture", "SURFACES CAN_OPEN CONTAINERS",
               "CLOSED OPEN CLEAN DIRTY", "kitchen"),
    _furniture("kitchen_counter", "Furniture", "SURFACES", _CLEANABLE, "kitchen"),
    _furniture("nightstand", "Furniture", "SURFACES CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN",
               _BEDROOMS),
    _furniture("pantry", "Furniture", "SURFACES", "CLEAN", "kitchen"),
    _furniture("shoe_rack", "Furniture", "SURFACES GRABBABLE MOVABLE", _CLEANABLE,
               "entrance_hall kids_bedroom"),
    _furniture("sink", "Furniture", "RECIPIENT CONTAINERS", _CLEANABLE, "kitchen bathroom"),
    _furniture("table", "Furniture", "SURFACES MOVABLE", _CLEANABLE,
               "kitchen dining_room living_room"),
    _furniture("toilet", "Furniture", "SITTABLE CAN_OPEN CONTAINERS", "CLOSED OPEN CLEAN DIRTY",
               "bathroom"),
    _furniture("towel_rack", "Furniture", "SURFACES GRABBABLE MOVABLE", "CLEAN", "bathroom"),
    _furniture("trashcan", "Furniture", "CAN_OPEN CONTAINERS MOVABLE", "CLOSED OPEN CLEAN DIRTY",
               "bathroom home_office kids_bedroom"),
    _furniture("carpet", "Decor", "SURFACES MOVABLE", _CLEANABLE, "living_room kids_bedroom"),
    _furniture("curtain", "Decor", "CAN_OPEN COVER_OBJECT MOVABLE", "CLOSED OPEN CLEAN",
               "living_room bedroom"),
    _furniture("mat", "Decor", "SURFACES GRABBABLE SITTABLE LIEABLE MOVABLE", _CLEANABLE,
               "bathroom entrance_hall"),
    _furniture("window", "Windows", "CAN_OPEN", "CLOSED OPEN CLEAN DIRTY",
               "living_room bedroom kitchen home_office kids_bedroom dining_room"),
    _furniture("floor_lamp", "Lamps", "HAS_SWITCH MOVABLE", "OFF ON CLEAN",
               "living_room bedroom home_office"),
    _furniture("lamp", "Lamps", "HAS_SWITCH HAS_PLUG", "OFF ON PLUGGED_IN PLUGGED_OUT CLEAN",
               _BEDROOMS),
    _furniture("light", "Electronics", "HAS_SWITCH HAS_PLUG", "OFF ON PLUGGED_IN CLEAN",
               " ".join(_ROOM_NAMES)),
    _furniture("television", "Electronics", "HAS_SWITCH LOOKABLE HAS_PLUG",
               "OFF ON PLUGGED_IN PLUGGED_OUT CLEAN", "living_room bedroom"),
    _furniture("computer", "Electronics", "HAS_SWITCH LOOKABLE", "OFF ON CLEAN", "home_office"),
    _furniture("printer", "Electronics", "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN", "home_office"),
    # VirtualHome will not open anything that is ON, so a fridge or freezer starts OFF to be usable.
    _furniture("fridge", "Appliances", "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF PLUGGED_IN CLEAN DIRTY", "kitchen"),
    _furniture("freezer", "Appliances", "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF PLUGGED_IN CLEAN", "kitchen"),
    _furniture("microwave", "Appliances", "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN DIRTY", "kitchen"),
    _furniture("oven", "Appliances", "CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF ON PLUGGED_IN CLEAN DIRTY", "kitchen"),
    _furniture("stove", "Appliances", "SURFACES CAN_OPEN HAS_SWITCH CONTAINERS",
               "CLOSED OPEN OFF ON CLEAN DIRTY", "kitchen"),
    _furniture("dishwasher", "Appliances", "CAN_OPEN HAS_SWITCH CONTAINERS",
               "CLOSED OPEN OFF ON CLEAN", "kitchen"),
    _furniture("coffe_maker", "Appliances",
               "RECIPIENT CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG MOVABLE",
               "CLOSED OPEN OFF ON PLUGGED_IN PLUGGED_OUT CLEAN DIRTY", "kitchen"),
    _furniture("toaster", "Appliances", "HAS_SWITCH CONTAINERS HAS_PLUG MOVABLE",
               "OFF ON PLUGGED_IN PLUGGED_OUT CLEAN", "kitchen"),
    _furniture("washing_machine", "Appliances", "RECIPIENT CAN_OPEN HAS_SWITCH CONTAINERS HAS_PLUG",
               "CLOSED OPEN OFF ON PLUGGED_IN CLEAN", "bathroom"),
]

_DISH = "GRABBABLE RECIPIENT POURABLE MOVABLE"
_CUTLERY = "GRABBABLE MOVABLE"
_PRODUCE = "GRABBABLE EATABLE CUTTABLE MOVABLE"
_CLOTHES = "GRABBABLE HANGABLE CLOTHES MOVABLE"
_BOOK = "GRABBABLE CUTTABLE CAN_OPEN READABLE HAS_PAPER MOVABLE"
_KITCHEN_SHELVES = "kitchen_cabinet cupboard"
_FRIDGES = "fridge freezer"
_READING_SPOTS = "coffee_table couch desk bookshelf table"

_OBJECTS = [
    # Kitchenware.
    _object("cup", _DISH, _CLEANABLE, on="kitchen_counter table desk nightstand",
            inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("mug", _DISH, _CLEANABLE, on="kitchen_counter table desk coffee_table",
            inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("water_glass", _DISH, _CLEANABLE,
            on="kitchen_counter table nightstand bathroom_counter",
            inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("plate", "SURFACES GRABBABLE RECIPIENT MOVABLE", _CLEANABLE, on="kitchen_counter table",
            inside=f"{_KITCHEN_SHELVES} dishwasher sink microwave"),
    _object("bowl", "GRABBABLE RECIPIENT MOVABLE", _CLEANABLE,
            on="kitchen_counter table coffee_table", inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("fork", _CUTLERY, _CLEANABLE, on="kitchen_counter table",
            inside="kitchen_cabinet dishwasher sink"),
    _object("spoon", _CUTLERY, _CLEANABLE, on="kitchen_counter table",
            inside=f"{_KITCHEN_SHELVES} dishwasher sink"),
    _object("knife", _CUTLERY, _CLEANABLE, on="kitchen_counter table",
            inside="kitchen_cabinet dishwasher"),
    _object("chef_knife", _CUTLERY, _CLEANABLE, on="kitchen_counter",
            inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("cutting_board", "SURFACES GRABBABLE MOVABLE", _CLEANABLE, on="kitchen_counter table",
            inside=_KITCHEN_SHELVES),
    _object("fryingpan", "GRABBABLE RECIPIENT MOVABLE", _CLEANABLE, on="stove kitchen_counter",
            inside=f"{_KITCHEN_SHELVES} dishwasher"),
    _object("cookingpot", "GRABBABLE RECIPIENT CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN DIRTY",
            on="stove kitchen_counter", inside=f"{_KITCHEN_SHELVES} oven"),
    _object("kettle", "GRABBABLE RECIPIENT HAS_SWITCH HAS_PLUG MOVABLE",
            "OFF PLUGGED_IN PLUGGED_OUT CLEAN", on="kitchen_counter stove"),
    _object("dish_soap", "GRABBABLE POURABLE MOVABLE CREAM", "CLEAN", on="kitchen_counter",
            inside="cupboard sink"),
    # Food and drink.
    _object("food_apple", _PRODUCE, "CLEAN", on="kitchen_counter table pantry", inside="fridge"),
    _object("food_banana", _PRODUCE, "CLEAN", on="kitchen_counter table pantry"),
    _object("food_bread", _PRODUCE, "CLEAN", on="kitchen_counter table pantry",
            inside=f"{_KITCHEN_SHELVES} fridge"),
    _object("food_carrot", _PRODUCE, "CLEAN", on="kitchen_counter pantry", inside=_FRIDGES),
    _object("food_egg", _PRODUCE, "CLEAN", on="kitchen_counter", inside="fridge"),
    _object("food_steak", _PRODUCE, "CLEAN", on="kitchen_counter", inside=_FRIDGES),
    _object("food_cheese", "GRABBABLE EATABLE CUTTABLE MOVABLE CREAM", "CLEAN",
            on="kitchen_counter", inside="fridge"),
    _object("food_cereal", "GRABBABLE EATABLE POURABLE CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN",
            on="kitchen_counter pantry", inside=_KITCHEN_SHELVES),
    _object("milk", "GRABBABLE DRINKABLE POURABLE CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN",
            on="kitchen_counter table", inside="fridge"),
    _object("juice", "GRABBABLE DRINKABLE POURABLE MOVABLE", "CLEAN",
            on="kitchen_counter table pantry", inside="fridge"),
    _object("wine", "GRABBABLE DRINKABLE POURABLE MOVABLE", "CLEAN",
            on="kitchen_counter table coffee_table", inside="fridge cupboard"),
    _object("beer", "GRABBABLE DRINKABLE POURABLE CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN",
            on="kitchen_counter table coffee_table", inside=_FRIDGES),
    # Living room.
    _object("remote_control", "GRABBABLE HAS_SWITCH MOVABLE", "OFF ON CLEAN",
            on="coffee_table couch table bed"),
    _object("book", _BOOK, "CLOSED OPEN CLEAN", on=f"{_READING_SPOTS} nightstand",
            inside="cabinet"),
    _object("magazine", "GRABBABLE CAN_OPEN READABLE HAS_PAPER MOVABLE", "CLOSED OPEN CLEAN",
            on=_READING_SPOTS),
    _object("newspaper", "GRABBABLE CAN_OPEN READABLE COVER_OBJECT HAS_PAPER MOVABLE",
            "CLOSED OPEN CLEAN", on="coffee_table couch desk table"),
    _object("pillow", "GRABBABLE MOVABLE", _CLEANABLE, on="couch bed bench chair"),
    _object("blanket", "GRABBABLE HANGABLE COVER_OBJECT MOVABLE", _CLEANABLE, on="couch bed",
            inside="closet"),
    _object("cellphone", "GRABBABLE HAS_SWITCH HAS_PLUG MOVABLE",
            "OFF ON PLUGGED_IN PLUGGED_OUT CLEAN", on="couch desk nightstand table"),
    _object("board_game", "SURFACES GRABBABLE LOOKABLE MOVABLE", "CLEAN", on="table",
            inside="cabinet closet"),
    _object("laptop", "GRABBABLE HAS_SWITCH LOOKABLE HAS_PLUG MOVABLE",
            "OFF ON PLUGGED_IN PLUGGED_OUT CLEAN", on="desk coffee_table couch table"),
    # Bedroom and wardrobe.
    _object("clothes_shirt", _CLOTHES, _CLEANABLE, on="couch ironing_board",
            inside="closet dresser washing_machine"),
    _object("clothes_pants", _CLOTHES, _CLEANABLE, on="couch ironing_board",
            inside="closet dresser washing_machine"),
    _object("clothes_jacket", _CLOTHES, _CLEANABLE, on="couch", inside="closet dresser"),
    _object("clothes_socks", _CLOTHES, _CLEANABLE, on="shoe_rack",
            inside="dresser closet washing_machine"),
    _object("pajamas", "GRABBABLE CLOTHES MOVABLE", _CLEANABLE, on="bed", inside="dresser closet"),
    _object("slippers", _CLOTHES, _CLEANABLE, on="shoe_rack", inside="closet"),
    _object("shoes", "GRABBABLE CLOTHES MOVABLE", _CLEANABLE, on="shoe_rack bench",
            inside="closet"),
    _object("alarm_clock", "GRABBABLE HAS_SWITCH LOOKABLE HAS_PLUG MOVABLE",
            "OFF ON PLUGGED_IN CLEAN", on="nightstand table"),
    _object("novel", _BOOK, "CLOSED OPEN CLEAN", on="bookshelf couch table",
            inside="dresser cabinet"),
    _object("toy", "GRABBABLE MOVABLE", _CLEANABLE, on="carpet couch shoe_rack"),
    # Bathroom.
    _object("toothbrush", "GRABBABLE RECIPIENT MOVABLE", _CLEANABLE, on="bathroom_counter",
            inside="bathroom_cabinet"),
    _object("tooth_paste", "GRABBABLE POURABLE CAN_OPEN MOVABLE CREAM", "CLOSED OPEN CLEAN",
            on="bathroom_counter", inside="bathroom_cabinet"),
    _object("soap", "GRABBABLE MOVABLE CREAM", "CLEAN", on="bathroom_counter kitchen_counter",
            inside="bathroom_cabinet"),
    _object("shampoo", "GRABBABLE POURABLE CAN_OPEN MOVABLE", "CLOSED OPEN CLEAN",
            on="bathroom_counter", inside="bathroom_cabinet"),
    _object("towel", "GRABBABLE COVER_OBJECT MOVABLE", _CLEANABLE, on="towel_rack bathroom_counter",
            inside="bathroom_cabinet washing_machine"),
    _object("hairbrush", "GRABBABLE MOVABLE", _CLEANABLE, on="bathroom_counter",
            inside="bathroom_cabinet dresser"),
    _object("toilet_paper", "GRABBABLE HANGABLE CUTTABLE COVER_OBJECT HAS_PAPER MOVABLE", "CLEAN",
            on="bathroom_counter", inside="bathroom_cabinet"),
    _object("laundry_detergent", "GRABBABLE POURABLE MOVABLE", "CLEAN",
            inside="washing_machine cabinet"),
    # Office, study and hall.
    _object("mouse", "GRABBABLE HAS_PLUG MOVABLE", "PLUGGED_IN PLUGGED_OUT CLEAN", on="desk"),
    _object("keyboard", "GRABBABLE HAS_PLUG MOVABLE", "PLUGGED_IN PLUGGED_OUT CLEAN", on="desk"),
    _object("pen", "GRABBABLE MOVABLE", "CLEAN", on="desk table bookshelf",
            inside="dresser cabinet"),
    _object("notebook", _BOOK, "CLOSED OPEN CLEAN", on="desk bookshelf table",
            inside="filing_cabinet"),
    _object("paper", "GRABBABLE CUTTABLE READABLE HAS_PAPER MOVABLE", "CLEAN",
            on="desk bookshelf table", inside="filing_cabinet"),
    _object("document", "GRABBABLE READABLE HAS_PAPER MOVABLE", "CLEAN", on="desk bookshelf",
            inside="filing_cabinet cabinet"),
    _object("folder", "GRABBABLE CAN_OPEN READABLE CONTAINERS HAS_PAPER MOVABLE",
            "CLOSED OPEN CLEAN", on="desk bookshelf", inside="filing_cabinet"),
    _object("mail", "GRABBABLE CAN_OPEN READABLE HAS_PAPER MOVABLE", "CLOSED OPEN CLEAN",
            on="bench shoe_rack desk table"),
    _object("keys", "GRABBABLE MOVABLE", "CLEAN", on="bench desk nightstand", inside="dresser"),
    _object("bag", "GRABBABLE RECIPIENT CAN_OPEN CONTAINERS COVER_OBJECT MOVABLE",
            "CLOSED OPEN CLEAN", on="bench chair shoe_rack couch"),
]

CATALOG: dict[str, ClassInfo] = {c.name: c for c in _ROOMS + _SPECIAL + _FURNITURE + _OBJECTS}
ROOM_CLASSES: tuple[str, ...] = _ROOM_NAMES
FURNITURE_CLASSES: tuple[str, ...] = tuple(c.name for c in _FURNITURE)
OBJECT_CLASSES: tuple[str, ...] = tuple(c.name for c in _OBJECTS)


def furniture_for(room: str) -> tuple[str, ...]:
    """Furniture classes that may stand in `room`, in catalog order."""
    return tuple(name for name in FURNITURE_CLASSES if room in CATALOG[name].rooms)
