"""Benchmarks: contenders side by side in one process, reported as ratios plus one JSON line."""
from e2wm.errors import E2WMError
from e2wm.files import dumps


def needs_official(what: str) -> None:
    from e2wm.world.oracle import available
    if not available():
        raise E2WMError(f"bench {what} runs the official executor side by side: pip install 'e2wm[virtualhome]'")


def report(r: dict, *lines: str) -> int:
    """Print `lines`, then `r` as one JSON line; exit code 0."""
    print(*lines, dumps(r), sep="\n")
    return 0
