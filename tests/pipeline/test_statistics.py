"""Seed statistics: mean ± std against numpy, the paired t-interval against scipy's
``ttest_rel`` and a textbook example, the verdict rule, one seed, unpaired seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ttest_rel

from pipeline.reporting.statistics import (
    BETTER,
    NO_COMMON_SEED,
    NO_DIFFERENCE,
    NOT_FINITE,
    ONE_SEED,
    WORSE,
    PairedDifference,
    Summary,
    paired_difference,
    summarize,
    verdict,
)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_summary_is_the_mean_and_sample_std(n: int) -> None:
    values = np.random.default_rng(n).normal(40.0, 2.0, n)
    summary = summarize(list(values))
    assert summary.n == n
    assert summary.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert summary.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_summary_of_one_or_no_value_has_no_std() -> None:
    assert summarize([41.5]) == Summary(41.5, None, 1)
    assert summarize([]) == Summary(None, None, 0)
    nan = summarize([1.0, math.nan])
    assert nan.n == 2 and math.isnan(nan.mean) and math.isnan(nan.std)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
@pytest.mark.parametrize("shift", [0.0, 0.8, -1.5])
def test_interval_is_scipys_paired_t_interval(n: int, shift: float) -> None:
    rng = np.random.default_rng(100 * n + int(10 * shift))
    baseline = rng.normal(70.0, 1.0, n)
    ours = baseline + shift + rng.normal(0.0, 0.5, n)
    seeds = [3 * s + 1 for s in range(n)]  # seed numbers need not be 0..n-1
    result = paired_difference(dict(zip(seeds, ours, strict=True)),
                               dict(zip(seeds, baseline, strict=True)))
    test = ttest_rel(ours, baseline)
    interval = test.confidence_interval(confidence_level=0.95)
    assert result.n == n
    assert result.mean == pytest.approx(np.mean(ours - baseline), rel=1e-12)
    assert result.low == pytest.approx(interval.low, rel=1e-9)
    assert result.high == pytest.approx(interval.high, rel=1e-9)
    # the interval excludes 0 exactly when the two-sided paired t-test rejects at 5 %
    assert (result.verdict != NO_DIFFERENCE) == (test.pvalue < 0.05)
    assert result.verdict == (NO_DIFFERENCE if test.pvalue >= 0.05
                              else BETTER if result.mean > 0 else WORSE)


def test_textbook_example() -> None:
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2 df) = 4.303 (t table)
    result = paired_difference({0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    half = 4.303 / math.sqrt(3)
    assert result.mean == 2.0 and result.n == 3
    assert result.low == pytest.approx(2 - half, abs=1e-3)
    assert result.high == pytest.approx(2 + half, abs=1e-3)
    assert result.verdict == NO_DIFFERENCE  # [-0.48, 4.48] holds 0
    # the same mean, the spread shrunk tenfold: [1.75, 2.25] excludes 0
    tight = paired_difference({0: 10.9, 1: 11.0, 2: 11.1}, {0: 9.0, 1: 9.0, 2: 9.0})
    assert tight.low == pytest.approx(2 - 0.1 * 4.303 / math.sqrt(3), abs=1e-3)
    assert tight.verdict == BETTER


def test_only_seeds_both_rows_have_are_paired() -> None:
    ours = {0: 5.0, 1: 6.5, 2: 7.0, 3: 99.0}  # seed 3: no baseline run
    baseline = {1: 5.0, 2: 5.2, 0: 4.1, 7: -50.0}  # seed 7: no run of ours
    result = paired_difference(ours, baseline)
    interval = ttest_rel([5.0, 6.5, 7.0], [4.1, 5.0, 5.2]).confidence_interval()
    assert result.n == 3
    assert result.mean == pytest.approx((0.9 + 1.5 + 1.8) / 3)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.1, 2.0, BETTER), (-2.0, -0.1, WORSE), (-1.0, 1.0, NO_DIFFERENCE),
    (0.0, 1.0, NO_DIFFERENCE), (-1.0, 0.0, NO_DIFFERENCE)])  # touching 0 is not excluding it
def test_verdict_needs_the_interval_to_exclude_zero(low: float, high: float,
                                                    expected: str) -> None:
    assert verdict(low, high) == expected


def test_one_seed_names_no_winner() -> None:
    result = paired_difference({0: 80.0, 1: 81.0}, {0: 70.0})
    assert result == PairedDifference(10.0, None, None, 1, ONE_SEED)


def test_no_common_seed_and_non_finite_give_no_interval() -> None:
    assert paired_difference({0: 1.0}, {1: 1.0}) == PairedDifference(
        None, None, None, 0, NO_COMMON_SEED)
    assert paired_difference({}, {}).verdict == NO_COMMON_SEED
    nan = paired_difference({0: 1.0, 1: math.nan}, {0: 0.0, 1: 0.0})
    assert nan.verdict == NOT_FINITE and nan.low is None and nan.n == 2
    assert math.isnan(nan.mean)
    infinite = paired_difference({0: math.inf, 1: -math.inf}, {0: 0.0, 1: 0.0})
    assert infinite.verdict == NOT_FINITE and math.isnan(infinite.mean)
