"""Confidence intervals over seeds and examples, and paired tests between architectures.

Per-example results of one model are a (seeds x examples) matrix. Its intervals come from a
two-level bootstrap that resamples seeds and examples together, so that both sources of variation
(which training run, which test examples) widen the interval. Two architectures evaluated on the
same examples are compared by the difference of their means, with the same bootstrap (examples
resampled jointly for both, so the pairing is kept) and a paired sign-flip permutation test on the
per-example differences averaged over seeds.
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
    p_value: float  # two-sided, paired sign-flip permutation test over examples
    level: float
    alpha: float
    n_seeds: int
    n_examples: int

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


def paired_comparison(candidate, baseline, level: float = 0.95, alpha: float = 0.05,
                      n_boot: int = 1000, n_perm: int = 5000, seed: int = 0) -> Comparison:
    """Compare two (seeds x examples) matrices measured on the same examples."""
    a, b = _as_matrix(candidate), _as_matrix(baseline)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison needs the same examples: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        ex = rng.integers(0, n, size=n)  # the same examples for both models keeps the pairing
        sa = rng.integers(0, a.shape[0], size=a.shape[0])
        sb = rng.integers(0, b.shape[0], size=b.shape[0])
        diffs[i] = a[sa][:, ex].mean() - b[sb][:, ex].mean()
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Comparison(float(a.mean()), float(b.mean()), float(a.mean() - b.mean()), float(lo),
                      float(hi), paired_permutation_p(a.mean(0) - b.mean(0), n_perm, rng), level,
                      alpha, min(a.shape[0], b.shape[0]), n)


def paired_permutation_p(d: np.ndarray, n_perm: int = 5000, rng=None) -> float:
    """Two-sided p-value of mean(d) = 0 by random sign flips (exact in distribution, no normality).

    The observed statistic counts as one of the permutations, so p is never 0.
    """
    rng = rng or np.random.default_rng(0)
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]  # ties carry no sign information
    if d.size == 0:
        return 1.0
    observed = abs(d.mean())
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1))
