"""Where scenes come from: JSON files or dicts, procedural apartments (the default), RobotHow.

A scene source string is one of `procedural:SEED` (optionally `procedural:SEED:N_CHARACTERS`),
`robothow:PROGRAM` (e.g. `robothow:file1003_2`, the program's initial graph; needs the
`virtualhome` extra), or a path to a VirtualHome scene JSON file.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from e2wm.errors import E2WMError, SceneError
from e2wm.files import read_json
from e2wm.world.script import ScriptLine, parse_program

MAX_SEED = 2**63 - 1
MAX_CHARACTERS = 16
_ROBOTHOW = ("dataset/programs_processed_precond_nograb_morepreconds",
             "TrimmedTestScene1_graph/results_intentions_march-13-18")


def load_json(path: str | Path) -> dict:
    """Read a scene JSON file; the error names the file (and the position of a syntax error)."""
    try:
        return read_json(path, "scene file")
    except E2WMError as e:
        raise SceneError(str(e)) from None


def load_scene(source: str) -> dict:
    """The VirtualHome scene dict a source string names."""
    kind, _, rest = source.partition(":")
    if kind == "procedural":
        from e2wm.world.procedural import generate_apartment
        parts = rest.split(":") if rest else ["0"]
        try:
            if len(parts) > 2:
                raise ValueError
            seed, chars = int(parts[0]), int(parts[1]) if len(parts) > 1 else 1
        except ValueError:
            raise SceneError(f"scene {source[:80]!r}: expected procedural:SEED[:N_CHARACTERS]") from None
        if not 0 <= seed <= MAX_SEED or not 1 <= chars <= MAX_CHARACTERS:
            raise SceneError(f"scene {source[:80]!r}: SEED must be in [0, {MAX_SEED}] and N_CHARACTERS in "
                             f"[1, {MAX_CHARACTERS}]")
        return generate_apartment(seed, n_characters=chars)
    if kind == "robothow":
        return robothow_program(rest).graphs["init_graph"]
    scene = load_json(source)
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:   # a name os.fsdecode kept as surrogates: episodes and suites record it as text
        raise SceneError(f"{source}: the file name is not valid UTF-8; rename the scene file") from None
    return scene


@dataclass(frozen=True)
class RobotHowProgram:
    """One of the RobotHow programs shipped with eai-eval, with its initial and final graphs."""
    name: str
    script_path: Path
    graph_path: Path

    @cached_property
    def _text(self) -> list[str]:
        return self.script_path.read_text().splitlines()

    @property
    def title(self) -> str:
        return self._text[0].strip() if self._text else ""

    @property
    def description(self) -> str:
        return self._text[1].strip() if len(self._text) > 1 else ""

    @property
    def lines(self) -> list[ScriptLine]:
        try:
            return parse_program("\n".join(self._text))
        except E2WMError as e:
            raise E2WMError(f"{self.script_path}: {e}") from None

    @property
    def graphs(self) -> dict:
        """{'init_graph': ..., 'final_graph': ...} as shipped."""
        return load_json(self.graph_path)


def robothow_root() -> Path:
    spec = importlib.util.find_spec("virtualhome_eval")
    if spec is None or not spec.submodule_search_locations:
        raise E2WMError("RobotHow programs need the `virtualhome` extra: "
                        "pip install 'e2wm[virtualhome]' (the eai-eval package)")
    return Path(list(spec.submodule_search_locations)[0]) / _ROBOTHOW[0]


def robothow_programs() -> list[RobotHowProgram]:
    """All RobotHow programs that have both a script and graphs, sorted by name."""
    root = robothow_root()
    scripts = root / "executable_programs" / _ROBOTHOW[1]
    graphs = root / "init_and_final_graphs" / _ROBOTHOW[1]
    out = []
    for g in sorted(graphs.glob("*.json")):
        s = scripts / (g.stem + ".txt")
        if s.is_file():
            out.append(RobotHowProgram(g.stem, s, g))
    return out


def robothow_program(name: str) -> RobotHowProgram:
    for p in robothow_programs():
        if p.name == name:
            return p
    raise E2WMError(f"robothow:{name}: no such RobotHow program (names look like file1003_2)")
