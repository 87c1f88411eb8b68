"""Error bars for a suite's figures: the percentile bootstrap interval of a mean over the suite's items.

`bootstrap(values)`: the items are resampled with replacement `resamples` times (one index matrix drawn
from `numpy.random.Generator(numpy.random.PCG64(seed))`, so the same values and seed give the same
interval on every machine and rank count), each resample's mean taken, and the interval is the
(1 - level) / 2 and (1 + level) / 2 quantiles of those means. `paired(a, b)`: the same for mean(b - a)
over items both runs scored, each resample drawing the same items from both (the difference's
bootstrap), which is much narrower than two separate intervals where the runs' items are correlated.
`relative_gain(pairs)`: E2WM's summary figure, the mean over suites of (mean(b) - mean(a)) / mean(a), with
each suite's items drawn jointly in both runs and the suites drawn independently (one generator, suite by
suite in the order given). The index matrix holds resamples x n int64 (16 MB per 1,000 items at 2,000
resamples).
"""
from __future__ import annotations

import math
import reprlib

import numpy as np

from e2wm.errors import E2WMError

LEVEL, RESAMPLES, SEED = 0.95, 2000, 0   # what `e2wm eval` and `e2wm report` use (recorded in results.json)


def settings() -> dict:
    """How the intervals are drawn, as results.json records it beside each interval."""
    return {"level": LEVEL, "resamples": RESAMPLES, "seed": SEED}


def _values(values, what: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise E2WMError(f"bootstrap: {what}: expected a list of numbers, got {reprlib.repr(values)}") from None
    if x.ndim != 1:
        raise E2WMError(f"bootstrap: {what}: expected a flat list of numbers, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise E2WMError(f"bootstrap: {what}: expected finite numbers, got {reprlib.repr(x[~np.isfinite(x)][0])} "
                        f"at item {int(np.flatnonzero(~np.isfinite(x))[0])}")
    return x


def _check(seed, resamples, level) -> None:
    for name, v, low in (("seed", seed, 0), ("resamples", resamples, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise E2WMError(f"bootstrap: {name}: expected an int >= {low}, got {reprlib.repr(v)}")
    if (isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level)
            or not 0 < level < 1):
        raise E2WMError(f"bootstrap: level: expected a number in (0, 1), got {reprlib.repr(level)}")


def _interval(x: np.ndarray, seed: int, resamples: int, level: float) -> tuple[float, float] | None:
    if x.size == 0:
        return None
    rng = np.random.Generator(np.random.PCG64(seed))
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap(values, seed: int = SEED, resamples: int = RESAMPLES, level: float = LEVEL
              ) -> tuple[float, float] | None:
    """(low, high): the percentile bootstrap interval of the mean of `values` (finite numbers); None for
    no values, (v, v) for one."""
    _check(seed, resamples, level)
    return _interval(_values(values, "values"), seed, resamples, level)


def paired(a, b, seed: int = SEED, resamples: int = RESAMPLES, level: float = LEVEL
           ) -> tuple[float, float] | None:
    """(low, high) of mean(b - a) over the same items (a[i] and b[i] one item's values in two runs), each
    resample drawing the same items from both; None for no items."""
    _check(seed, resamples, level)
    x, y = _values(a, "a"), _values(b, "b")
    if x.size != y.size:
        raise E2WMError(f"bootstrap: paired values: {x.size} against {y.size} items; pair the same items")
    return _interval(y - x, seed, resamples, level)


def ratio(num, den, seed: int = SEED, resamples: int = RESAMPLES, level: float = LEVEL
          ) -> tuple[float, float] | None:
    """(low, high) of sum(num) / sum(den) with items resampled (num[i] and den[i] one item's, den >= 0): the
    percentile bootstrap of a token-weighted mean over documents, e.g. a corpus's NLL per token; None for no
    items or a resample of no weight."""
    _check(seed, resamples, level)
    x, w = _values(num, "num"), _values(den, "den")
    if x.size != w.size:
        raise E2WMError(f"bootstrap: ratio: {x.size} numerators against {w.size} denominators")
    if x.size == 0:
        return None
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    tops, bottoms = x[idx].sum(axis=1), w[idx].sum(axis=1)
    if not (bottoms > 0).all():
        return None
    low, high = np.quantile(tops / bottoms, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def relative_gain(pairs, seed: int = SEED, resamples: int = RESAMPLES, level: float = LEVEL
                  ) -> tuple[float, float] | None:
    """(low, high) of the mean over suites of (mean(b) - mean(a)) / mean(a), `pairs` one (a, b) per suite (a[i],
    b[i] one item's values in the base and the run). None for no suites, a suite with no items, or where some
    resample's base mean is not above 0 (the relative gain is then unbounded, and so is the interval)."""
    _check(seed, resamples, level)
    rng = np.random.Generator(np.random.PCG64(seed))
    total = np.zeros(resamples)
    for i, (a, b) in enumerate(pairs):
        x, y = _values(a, f"suite {i} base"), _values(b, f"suite {i} run")
        if x.size != y.size:
            raise E2WMError(f"bootstrap: relative gain: suite {i}: {x.size} against {y.size} items; pair the same "
                            f"items")
        if x.size == 0:
            return None
        idx = rng.integers(0, x.size, size=(resamples, x.size))
        base = x[idx].mean(axis=1)
        if not (base > 0).all():
            return None
        total += (y[idx].mean(axis=1) - base) / base
    if not pairs:
        return None
    low, high = np.quantile(total / len(pairs), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
