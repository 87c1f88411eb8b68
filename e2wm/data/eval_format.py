"""Reading evaluation sets in E2WM's released format: one JSON object per line (or one JSON list
of them), generation rows {"input", "ref"} or multiple-choice rows {"input", "answer_list",
"answer"} with the answer among the options. Our plan suites add a "world" to each generation row
(`e2wm.eval.executability`): {"scene": source, "goals": [fact texts], "nodes": [ids]}, checked here
against its scene, so that a bad one fails before any model loads.

How a suite is scored is its `SuiteSpec` (`read_spec`): the sidecar `<stem>.suite.yaml` next to the file
(`e2wm build-data` writes one per suite, from the spec its module declares), else E2WM's known file
names (`KNOWN`, the one table of them), else the default of its kind; never a substring of its name."""
from __future__ import annotations

import dataclasses
import reprlib
from pathlib import Path
from typing import Literal

import yaml

from e2wm.config import build, load_yaml
from e2wm.errors import E2WMError, reject_unknown_keys
from e2wm.files import MAX_DATA_BYTES, loads, read_text
from e2wm.world.facts import Fact
from e2wm.world.graph import Scene
from e2wm.world.scenes import load_scene

METRICS = {"gen": ("rouge", "lcs", "exact_match"), "mc": ("accuracy",)}   # each kind's headline metrics
NORMS = ("ln", "un")    # multiple choice: mean token log-probability; sum less its sum after "Answer:"
SIDECAR = ".suite.yaml"


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """How `e2wm eval` scores a suite: its kind, its headline metric (rouge, lcs or exact_match for
    generation, accuracy for multiple choice), the headline normalisation (mc only; both are reported)
    and whether its rows carry a "world" (generation only: then plans are also run for executability)."""
    kind: Literal["gen", "mc"]
    metric: str
    normalisation: Literal["ln", "un"] | None = None
    world: bool = False

    def __post_init__(self):
        if self.metric not in METRICS[self.kind]:
            raise E2WMError(f"metric: expected {' or '.join(METRICS[self.kind])} for a {self.kind} suite, "
                            f"got {reprlib.repr(self.metric)}")
        if (self.normalisation is None) != (self.kind == "gen"):
            raise E2WMError(f"normalisation: expected {' or '.join(NORMS)} for a mc suite and none for a gen "
                            f"suite, got {reprlib.repr(self.normalisation)}")
        if self.world and self.kind == "mc":
            raise E2WMError("world: multiple-choice rows carry no world")


_ROUGE, _UN, _LN = SuiteSpec("gen", "rouge"), SuiteSpec("mc", "accuracy", "un"), SuiteSpec("mc", "accuracy", "ln")
# E2WM's released files (data/eval/gen, data/eval/qa) by name: the one place their metrics are given
KNOWN = {"plan_gen": _ROUGE, "plan_gen_unseen": _ROUGE, "plan_gen_confusing": _ROUGE,
         "plan_gen_unseen_confusing": _ROUGE, "obj_move_path": SuiteSpec("gen", "lcs"),
         "housework_qa": _UN, "neg_housework_qa": _UN, "act_infer": _UN, "act_recog": _LN, "count": _LN,
         "obj_move": _LN}
DEFAULT = {"gen": SuiteSpec("gen", "exact_match"), "mc": _LN}   # a file with neither sidecar nor known name


def sidecar(path) -> Path:
    return Path(path).with_name(Path(path).stem + SIDECAR)


def spec_text(name: str, spec: SuiteSpec) -> str:
    return (f"# how `e2wm eval` scores {name}.jsonl; rename it with its suite file\n"
            + yaml.safe_dump(dataclasses.asdict(spec), sort_keys=False))


def read_spec(path, kind: str, rows: list[dict]) -> tuple[SuiteSpec, str]:
    """(spec, where it came from) of suite file `path`, whose `rows` (`read_eval`) are of `kind`: its
    sidecar (E2WMError naming it and the field if malformed or at odds with the rows), else E2WM's
    known name (of this kind), else the default of the kind."""
    path, world = Path(path), "world" in rows[0]
    side = sidecar(path)
    if not side.exists():
        known = KNOWN.get(path.stem)
        if known and known.kind == kind:
            return dataclasses.replace(known, world=world), f"E2WM's known name {path.stem}"
        return dataclasses.replace(DEFAULT[kind], world=world), f"default for a {kind} suite"
    where = str(side)
    data = load_yaml(read_text(side, "suite spec"), where)
    if not isinstance(data, dict) or not {"kind", "metric"} <= set(data):
        raise E2WMError(f"{where}: expected a mapping with 'kind', 'metric', 'normalisation' (mc) and 'world', "
                        f"got {reprlib.repr(data)}")
    spec = build(SuiteSpec, data, where)
    if spec.kind != kind:
        raise E2WMError(f"{where}: kind: {spec.kind}, but {path.name} holds {kind} rows")
    if spec.world != world:
        raise E2WMError(f"{where}: world: {str(spec.world).lower()}, but the rows of {path.name} carry "
                        f"{'a world' if world else 'none'}")
    return spec, f"sidecar {side.name}"


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
