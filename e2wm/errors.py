"""One exception family. Each message is one line that names what is wrong and where."""


class E2WMError(Exception):
    """Base of every error e2wm raises on bad input; the CLI prints it in one line and exits 2."""


class SceneError(E2WMError):
    """A scene graph is malformed: a missing id, a dangling edge, an unknown state or relation."""


class ScriptError(E2WMError):
    """A script line cannot be parsed: unknown action, wrong argument count, bad id."""


class AgentError(E2WMError):
    """A call names an agent the world does not have."""


def reject_unknown_keys(d: dict, known, where: str) -> None:
    """One line naming the config keys `d` has that `known` lacks, and the known ones."""
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise E2WMError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
