"""Scores over seeds: mean ± sample standard deviation, and the paired difference of two rows
with its t-interval (the report's seed-statistics tables). Plain Python and scipy's t quantile.

Two rows are compared seed by seed: runs of one seed draw the same batches in the same order,
so pairing takes the seed-to-seed variation both rows share out of the comparison. With the
differences ``d_s = ours_s - baseline_s`` over the ``n`` seeds both rows have, the interval is
``mean(d) ± t(1 - (1 - level) / 2, n - 1) · sd(d) / √n`` (``sd`` with ``n - 1`` in the
denominator), the confidence interval of ``scipy.stats.ttest_rel(ours, baseline)``. A row is
called better or worse only when that interval excludes 0; one seed gives no interval, so a
comparison from one seed names no winner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95
BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no difference shown"
ONE_SEED = "n/a (one seed)"
NO_COMMON_SEED = "n/a (no common seed)"
NOT_FINITE = "n/a (not finite)"


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (exactly rounded); non-finite values give what IEEE arithmetic
    gives, NaN or ±∞ (:func:`math.fsum` would raise on ``∞ - ∞``)."""
    if all(math.isfinite(v) for v in values):
        return math.fsum(values) / len(values)
    return sum(values) / len(values)


def _sample_std(values: Sequence[float], center: float) -> float:
    """Standard deviation with ``n - 1`` in the denominator (NaN or ∞ in: NaN out, where
    :func:`statistics.stdev` would raise)."""
    return math.sqrt(math.fsum((v - center) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Summary:
    """A score over seeds.

    Attributes:
        mean: the mean (``None`` without any value; not finite when a value is not).
        std: the sample standard deviation (``None`` below two values).
        n: how many values.
    """

    mean: float | None
    std: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """The :class:`Summary` of one score's values over seeds."""
    if not values:
        return Summary(None, None, 0)
    average = mean(values)
    return Summary(average, _sample_std(values, average) if len(values) >= 2 else None,
                   len(values))


def verdict(low: float, high: float) -> str:
    """``better`` when the interval lies above 0, ``worse`` below 0, else no difference."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


@dataclass(frozen=True)
class PairedDifference:
    """``ours - baseline`` over the seeds both have.

    Attributes:
        mean: the mean difference (``None`` without a common seed).
        low, high: its t-interval (``None`` below two common seeds or when not finite).
        n: how many seeds were paired.
        verdict: :data:`BETTER`, :data:`WORSE`, :data:`NO_DIFFERENCE`, or why there is none
            (:data:`ONE_SEED`, :data:`NO_COMMON_SEED`, :data:`NOT_FINITE`).
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    verdict: str


def paired_difference(ours: Mapping[int, float], baseline: Mapping[int, float],
                      level: float = LEVEL) -> PairedDifference:
    """``ours - baseline`` of two ``{seed: score}`` maps, paired by seed (a seed only one of
    them has is left out), with its ``level`` t-interval."""
    seeds = sorted(set(ours) & set(baseline))
    differences = [ours[s] - baseline[s] for s in seeds]
    n = len(differences)
    if n == 0:
        return PairedDifference(None, None, None, 0, NO_COMMON_SEED)
    average = mean(differences)
    if not math.isfinite(average):
        return PairedDifference(average, None, None, n, NOT_FINITE)
    if n == 1:
        return PairedDifference(average, None, None, 1, ONE_SEED)
    quantile = float(stats.t.ppf(1 - (1 - level) / 2, n - 1))
    half = quantile * _sample_std(differences, average) / math.sqrt(n)
    low, high = average - half, average + half
    return PairedDifference(average, low, high, n, verdict(low, high))
