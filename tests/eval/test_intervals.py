"""Bootstrap intervals of a suite's mean (`e2wm.eval.intervals`): the percentile interval of 400 Bernoulli
values agrees with the normal one, paired differences share their resamples, the same seed gives the
same interval, and bad input is one E2WMError."""
import math

import numpy as np
import pytest

from e2wm.errors import E2WMError
from e2wm.eval.intervals import LEVEL, RESAMPLES, bootstrap, paired, relative_gain


def _bernoulli(n: int, ones: int, seed: int) -> list[float]:
    values = [1.0] * ones + [0.0] * (n - ones)
    np.random.default_rng(seed).shuffle(values)
    return values


@pytest.mark.parametrize("n, ones", [(400, 120), (1000, 500)])
def test_a_bernoulli_mean_s_interval_is_the_normal_one(n, ones):
    values = _bernoulli(n, ones, seed=3)
    p = ones / n
    half = 1.96 * math.sqrt(p * (1 - p) / n)   # the normal (Wald) interval, which the bootstrap approaches
    low, high = bootstrap(values)
    assert low < p < high
    assert abs(low - (p - half)) <= 0.005 and abs(high - (p + half)) <= 0.005, (low, high, p - half, p + half)
    narrow = bootstrap(values, level=0.5)   # the interquartile range of the mean: 0.674 standard errors
    assert abs(narrow[1] - narrow[0] - 2 * 0.674 * half / 1.96) <= 0.005


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    values = list(np.random.default_rng(0).normal(2.0, 1.0, 200))
    assert bootstrap(values, seed=7) == bootstrap(list(values), seed=7) == bootstrap(np.array(values), seed=7)
    assert bootstrap(values, seed=7) != bootstrap(values, seed=8)
    assert bootstrap(values) == bootstrap(values, seed=0, resamples=RESAMPLES, level=LEVEL)


def test_no_values_one_value_and_constant_values():
    assert bootstrap([]) is None and paired([], []) is None
    assert bootstrap([0.25]) == (0.25, 0.25)
    assert bootstrap([3.0] * 10) == (3.0, 3.0)


def test_paired_differences_resample_the_same_items():
    rng = np.random.default_rng(1)
    a = list(rng.normal(0.0, 1.0, 300))
    assert paired(a, a) == (0.0, 0.0)
    shifted = [x + 0.1 for x in a]
    low, high = paired(a, shifted)
    assert low == pytest.approx(0.1, abs=1e-12) and high == pytest.approx(0.1, abs=1e-12)
    noisy = [x + 0.1 + e for x, e in zip(a, rng.normal(0.0, 0.1, 300))]
    assert paired(a, noisy) == bootstrap([y - x for x, y in zip(a, noisy)])
    low, high = paired(a, noisy)   # far narrower than either run's own interval (the items are shared)
    alone = bootstrap(noisy)
    assert low < 0.1 < high and (high - low) < (alone[1] - alone[0]) / 5


def test_the_relative_gain_s_interval_by_hand_and_its_edges():
    """E2WM's mean relative gain over suites: a run that doubles every item gains exactly +100% in every resample;
    a normal approximation of two independent suites' gains agrees with the bootstrap; a base that can resample
    to a mean of 0 makes the gain unbounded (None)."""
    rng = np.random.default_rng(5)
    a1, a2 = list(rng.uniform(0.5, 1.0, 400)), list(rng.uniform(0.2, 0.4, 300))
    assert relative_gain([(a1, [2 * x for x in a1])]) == pytest.approx((1.0, 1.0))
    b1 = [x * 1.2 + e for x, e in zip(a1, rng.normal(0.0, 0.1, 400))]
    b2 = [x * 0.9 + e for x, e in zip(a2, rng.normal(0.0, 0.05, 300))]
    low, high = relative_gain([(a1, b1), (a2, b2)])

    def gain_and_var(a, b):   # delta method for mean(b) / mean(a) - 1 over paired items
        a, b = np.asarray(a), np.asarray(b)
        r = b.mean() / a.mean()
        resid = (b - r * a) / a.mean()
        return r - 1, resid.var(ddof=1) / a.size
    (g1, v1), (g2, v2) = gain_and_var(a1, b1), gain_and_var(a2, b2)
    mid, half = (g1 + g2) / 2, 1.96 * math.sqrt(v1 + v2) / 2
    assert low < mid < high and abs(low - (mid - half)) < 0.004 and abs(high - (mid + half)) < 0.004
    assert relative_gain([([0.0, 1.0, 1.0], [1.0, 1.0, 1.0])]) is None   # a resample of [0, 0, 0] exists
    assert relative_gain([]) is None and relative_gain([([], [])]) is None
    with pytest.raises(E2WMError, match="suite 0: 2 against 1 items"):
        relative_gain([([1.0, 2.0], [1.0])])


@pytest.mark.parametrize("call, names", [
    (lambda: bootstrap([0.5, float("nan")]), ["finite", "item 1"]),
    (lambda: bootstrap([[0.5, 1.0]]), ["flat list"]),
    (lambda: bootstrap(["high"]), ["list of numbers"]),
    (lambda: bootstrap([0.5], level=1.5), ["level", "(0, 1)"]),
    (lambda: bootstrap([0.5], resamples=0), ["resamples", ">= 1"]),
    (lambda: bootstrap([0.5], seed=-1), ["seed"]),
    (lambda: paired([0.5, 1.0], [0.5]), ["2 against 1 items"]),
])
def test_bad_input_is_one_e2wm_error(call, names):
    with pytest.raises(E2WMError) as e:
        call()
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in names), str(e.value)


def test_ratio_of_equal_weights_is_the_bootstrap_of_the_mean_and_weights_count():
    """sum(num)/sum(den) over resampled items: with equal weights the same resamples as `bootstrap`, so the same
    interval; a heavy item moves it towards its own value."""
    from e2wm.eval.intervals import bootstrap, ratio
    rng = np.random.Generator(np.random.PCG64(3))
    x = rng.normal(5.0, 1.0, 200)
    lo, hi = ratio(2 * x, np.full(200, 2.0))
    assert (lo, hi) == pytest.approx(bootstrap(x), abs=1e-12)
    w = np.ones(200)
    w[0], x[0] = 1000.0, 9.0
    lo_w, hi_w = ratio(x * w, w)
    assert hi + 2 < hi_w < 9.0   # the heavy item (value 9) pulls the resamples that hold it towards it
    assert ratio([], []) is None
