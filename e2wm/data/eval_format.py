"""Reading evaluation sets in E2WM's released format: one JSON object per line (or one JSON list
of them), generation rows {"input", "ref"} or multiple-choice rows {"input", "answer_list",
"answer"} with the answer among the options. Our plan suites add a "world" to each generation row
(`e2wm.eval.executability`): {"scene": source, "goals": [fact texts], "nodes": [ids]}, checked here
against its scene, so that a bad one fails before any model loads."""
from __future__ import annotations

import reprlib
from pathlib import Path

from e2wm.errors import E2WMError, reject_unknown_keys
from e2wm.files import MAX_DATA_BYTES, loads, read_text
from e2wm.world.facts import Fact
from e2wm.world.graph import Scene
from e2wm.world.scenes import load_scene

SHAPES = "expected {'input', 'ref'} strings or 'input', 'answer_list' (strings) and 'answer' among them"


def _string(row: dict, key: str, where: str) -> None:
    if not isinstance(row.get(key), str):
        raise E2WMError(f"{where}: expected '{key}' to be a string, got {reprlib.repr(row.get(key))}")


def _row_kind(row, where: str) -> str:
    """"gen" or "mc" for a well-formed row; E2WMError naming `where` and the field otherwise."""
    if not isinstance(row, dict):
        raise E2WMError(f"{where}: {SHAPES} (got {type(row).__name__} {reprlib.repr(row)})")
    mc = "answer_list" in row or "answer" in row
    if "ref" in row and mc:
        raise E2WMError(f"{where}: a row has 'ref' (generation) or 'answer_list' and 'answer' (multiple choice), "
                        f"not both")
    if not mc and "ref" not in row:
        raise E2WMError(f"{where}: {SHAPES}")
    _string(row, "input", where)
    if not mc:
        _string(row, "ref", where)
        return "gen"
    options = row.get("answer_list")
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise E2WMError(f"{where}: expected 'answer_list' to be a non-empty list of strings, got "
                        f"{reprlib.repr(options)}")
    _string(row, "answer", where)
    if row["answer"] not in options:
        raise E2WMError(f"{where}: expected 'answer' among 'answer_list', got {reprlib.repr(row['answer'])}")
    if "world" in row:
        raise E2WMError(f"{where}: 'world' belongs to generation (plan) rows, not multiple choice")
    return "mc"


def _check_world(world, where: str, scenes: dict) -> None:
    """The row's "world" has the shape `execute` reads, its scene loads, and its goal facts and
    nodes name nodes (with their classes) of that scene. `scenes` caches parsed scenes by source."""
    if not isinstance(world, dict):
        raise E2WMError(f"{where}: expected 'world' to be a mapping with 'scene', 'goals' and 'nodes', "
                        f"got {reprlib.repr(world)}")
    reject_unknown_keys(world, ("scene", "goals", "nodes"), f"{where}: 'world'")
    source, goals, nodes = world.get("scene"), world.get("goals"), world.get("nodes", [])
    if not isinstance(source, str) or not source:
        raise E2WMError(f"{where}: expected 'world.scene' to be a scene source (procedural:SEED, robothow:NAME "
                        f"or a scene file), got {reprlib.repr(source)}")
    if not isinstance(goals, list) or not goals or not all(isinstance(g, str) for g in goals):
        raise E2WMError(f"{where}: expected 'world.goals' to be a non-empty list of goal facts like "
                        f"'<tv> (12) || ON', got {reprlib.repr(goals)}")
    if not isinstance(nodes, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes):
        raise E2WMError(f"{where}: expected 'world.nodes' to be a list of node ids, got {reprlib.repr(nodes)}")
    if source not in scenes:
        try:
            scenes[source] = Scene.from_dict(load_scene(source), source)
        except E2WMError as e:
            raise E2WMError(f"{where}: 'world.scene': {e}") from None
    scene = scenes[source]
    for k, g in enumerate(goals):
        try:
            Fact.parse(g, scene)
        except E2WMError as e:
            raise E2WMError(f"{where}: 'world.goals[{k}]': {e}") from None
    for k, n in enumerate(nodes):
        if n not in scene.class_name:
            raise E2WMError(f"{where}: 'world.nodes[{k}]': the scene {source} has no node {n}")


def read_eval(path) -> tuple[str, list[dict]]:
    """(kind, rows) of an evaluation file; E2WMError naming file:line (and the field) on a malformed
    row, a row of the other kind, a "world" on some rows only, or an empty file. In a JSON-list
    file, line numbers count rows from 1."""
    path = Path(path)
    text = read_text(path, "suite file", limit=MAX_DATA_BYTES)
    if text.lstrip().startswith("["):
        numbered = list(enumerate(loads(text, str(path)), 1))
    else:
        numbered = [(i, loads(line, f"{path}:{i}", position=False))
                    for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise E2WMError(f"{path}: no rows")
    kind, first, scenes = None, numbered[0], {}
    for i, row in numbered:
        where = f"{path}:{i}"
        k = _row_kind(row, where)
        if kind not in (None, k):
            raise E2WMError(f"{where}: a {k} row in a {kind} file")
        kind = k
        if ("world" in row) != ("world" in first[1]):
            has, lacks = (i, first[0]) if "world" in row else (first[0], i)
            raise E2WMError(f"{where}: line {has} has a 'world' and line {lacks} has none: give every row of a "
                            f"plan suite one, or none")
        if "world" in row:
            _check_world(row["world"], where, scenes)
    return kind, [row for _, row in numbered]
