"""Loaded at start-up by every Python of `run_gpu_checks.sh --dry` (this folder is on its PYTHONPATH): hides
the packages the GPU check machine does not have (ray, datasets, rouge-score), as that machine would - no
module, no distribution metadata - so a check that needs one fails here as it would there."""
import sys
from importlib.machinery import PathFinder

HIDDEN = {"ray", "datasets", "rouge_score"}


def _hidden(name: str) -> bool:
    return name.split(".")[0].replace("-", "_").lower() in HIDDEN


class _WithoutHidden:
    """sys.meta_path's PathFinder, blind to the hidden packages."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if _hidden(name) else PathFinder.find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        return (d for d in PathFinder.find_distributions(*args, **kwargs) if not _hidden(d.metadata["Name"] or ""))

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_WithoutHidden if f is PathFinder else f for f in sys.meta_path]
