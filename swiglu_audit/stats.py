"""Confidence intervals over seeds and examples, and paired tests between architectures.

Per-example results of one model are a (seeds x examples) matrix. Its intervals come from a
two-level bootstrap that resamples seeds and examples together, so that both sources of variation
(which training run, which test examples) widen the interval. Two architectures evaluated on the
same examples are compared by the difference of their means, with the same bootstrap (examples
resampled jointly for both, so the pairing is kept; seeds resampled per architecture).

The p-value comes from that same hierarchical bootstrap: twice the smaller share of replicate
differences on either side of zero. So the p-value and the interval answer one question (is the
*architecture* different, with training seeds and test examples both random?) and cannot
contradict each other: with alpha = 1 - confidence_level, p < alpha exactly when the interval
excludes 0 (both are read off the same replicates, with matching order statistics). An earlier
version used a sign-flip permutation test over examples with seeds averaged; that asks about
*these trained models* only and could print p = 0.0002 beside an interval through 0.

`Comparison.seeds_needed` is the matching power estimate: with the observed variance between seeds and
between examples, how many seeds per architecture would detect a difference of the policy
tolerance (two-sided alpha, power 0.8). Seed variance shrinks with more seeds; example variance
does not, so when the examples alone are too noisy it says that more test examples are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    level: float
    n_seeds: int
    n_examples: int

    def to_dict(self) -> dict:
        return {k: _finite_or_none(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class Comparison:
    candidate: float
    baseline: float
    difference: float  # candidate - baseline
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, from the same two-level bootstrap as the interval
    level: float
    alpha: float
    n_seeds: int
    n_examples: int
    # variance components for the power estimate (None where the metric is not a per-example
    # mean, e.g. an AUROC): of the two per-seed means, summed, and of the mean difference over examples
    seed_variance: float | None = None
    example_variance: float | None = None

    def seeds_needed(self, tolerance: float, power: float = 0.8, max_seeds: int = 1000) -> tuple[int | None, str]:
        """Seeds per architecture at which a true difference of `tolerance` would be detected
        with the given power: Var(diff) ~ seed_variance / S + example_variance. A normal
        approximation; None with the reason when no seed count reaches it."""
        from statistics import NormalDist

        if self.seed_variance is None or self.example_variance is None:
            return None, "not estimated for this metric (not a per-example mean)"
        if self.n_seeds < 2:
            return None, "one seed per architecture: the seed-to-seed variance cannot be estimated"
        if tolerance <= 0:
            return None, "no tolerance to detect"
        z = NormalDist().inv_cdf(1 - self.alpha / 2) + NormalDist().inv_cdf(power)
        budget = (tolerance / z) ** 2  # the variance the estimate may have
        if self.example_variance >= budget:
            return None, (f"more test examples needed: with {self.n_examples} examples the "
                          "example-to-example noise alone hides a difference of this size, whatever "
                          "the number of seeds")
        needed = max(2, math.ceil(self.seed_variance / (budget - self.example_variance)))
        return (needed, "") if needed <= max_seeds else (None, f"more than {max_seeds} seeds")

    @property
    def significant(self) -> bool:
        """Both the paired test and the seed-and-example interval must exclude no difference."""
        return self.p_value < self.alpha and not (self.ci_low <= 0.0 <= self.ci_high)

    def to_dict(self) -> dict:
        out = {k: _finite_or_none(v) for k, v in vars(self).items()}
        out["significant"] = self.significant
        return out


def _finite_or_none(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _as_matrix(values) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a (seeds x examples) matrix, got shape {m.shape}")
    return m


def bootstrap_mean(values, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean of a (seeds x examples) matrix with a two-level percentile bootstrap interval."""
    m = _as_matrix(values)
    s, n = m.shape
    rng = np.random.default_rng(seed)
    seed_idx = rng.integers(0, s, size=(n_boot, s))
    ex_idx = rng.integers(0, n, size=(n_boot, n))
    boots = np.array([m[seed_idx[b]][:, ex_idx[b]].mean() for b in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(m.mean()), float(lo), float(hi), level, s, n)


def interval_and_p(diffs: np.ndarray, level: float) -> tuple[float, float, float]:
    """(ci_low, ci_high, two-sided p) of "difference = 0" from bootstrap replicates of a
    difference. Both ends are order statistics read the same way as the p-value's tails, so at
    alpha = 1 - level: p < alpha exactly when the interval excludes 0."""
    d = np.sort(np.asarray(diffs, dtype=np.float64))
    m = max(1, math.ceil((1 - level) / 2 * len(d) - 1e-9))  # replicates allowed beyond each end
    lo, hi = float(d[m - 1]), float(d[len(d) - m])  # lo > 0 iff fewer than m replicates are <= 0
    p = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    return lo, hi, p


def paired_comparison(candidate, baseline, level: float = 0.95, alpha: float = 0.05,
                      n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Compare two (seeds x examples) matrices measured on the same examples."""
    a, b = _as_matrix(candidate), _as_matrix(baseline)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison needs the same examples: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    ex = rng.integers(0, n, size=(n_boot, n))  # the same examples for both models keeps the pairing
    sa = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    sb = rng.integers(0, b.shape[0], size=(n_boot, b.shape[0]))
    # mean over (resampled seeds x resampled examples) = mean over resampled examples of the
    # resampled seeds' per-example means
    diffs = np.array([a[sa[i]].mean(0)[ex[i]].mean() - b[sb[i]].mean(0)[ex[i]].mean() for i in range(n_boot)])
    lo, hi, p = interval_and_p(diffs, level)
    seed_var = float(np.var(a.mean(1), ddof=1) + np.var(b.mean(1), ddof=1)) if min(len(a), len(b)) > 1 else None
    example_var = float(np.var(a.mean(0) - b.mean(0), ddof=1)) / n if n > 1 else 0.0
    return Comparison(float(a.mean()), float(b.mean()), float(a.mean() - b.mean()), lo, hi, p, level,
                      alpha, min(a.shape[0], b.shape[0]), n, seed_var, example_var)


@dataclass(frozen=True)
class Statistics:
    """The audit's statistical settings in one place: the confidence level and alpha of the
    policy, the bootstrap replicates and seed of [statistics]. Suites estimate and compare
    through it, so no suite spells these settings."""

    level: float = 0.95
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0

    def mean(self, values) -> Estimate:
        return bootstrap_mean(values, self.level, self.n_boot, self.seed)

    def compare(self, candidate, baseline) -> Comparison:
        return paired_comparison(candidate, baseline, self.level, self.alpha, self.n_boot, self.seed)
