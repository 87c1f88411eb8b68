"""A fast VirtualHome-compatible symbolic world model (pure Python: no torch, ray or datasets)."""
from e2wm.world.graph import Scene
from e2wm.world.script import ScriptArg, ScriptLine, format_line, parse_line, parse_program
from e2wm.world.world import StepResult, World

__all__ = ["World", "StepResult", "Scene", "ScriptLine", "ScriptArg", "parse_line",
           "format_line", "parse_program"]
