"""OOD detection metrics, with the in-distribution (ID) class positive, and their bootstrap intervals.

Convention, stated in every report: a detector's score is higher for inputs it believes are
in-distribution.
- AUROC: P(score of a random ID input > score of a random OOD input), ties counting one half.
- AUPR-IN: average precision with ID positive, ranked by the score.
- AUPR-OUT: average precision with OOD positive, ranked by the negated score.
- FPR@95TPR: the share of OOD inputs accepted at the largest threshold that still accepts at least
  95% of ID inputs.
Every metric takes (B x n_in) and (B x n_out) arrays and returns B values, so that bootstrap
replicates are computed in one call; ties are handled exactly (average precision counts tied
scores as one threshold, as scikit-learn does).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.stats import rankdata

TPR_LEVEL = 0.95


def _rows(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.shape[1] == 0:
        raise ValueError("each side needs at least one score")
    return a


def auroc_rows(s_in, s_out) -> np.ndarray:
    s_in, s_out = _rows(s_in), _rows(s_out)
    n_in, n_out = s_in.shape[1], s_out.shape[1]
    ranks = rankdata(np.concatenate([s_in, s_out], axis=1), axis=1)  # average ranks for ties
    u = ranks[:, :n_in].sum(axis=1) - n_in * (n_in + 1) / 2
    return u / (n_in * n_out)


def _average_precision(pos, neg) -> np.ndarray:
    """(1 / n_pos) * sum over positives of precision at the positive's own score."""
    n_pos = pos.shape[1]
    all_scores = np.concatenate([pos, neg], axis=1)
    n = all_scores.shape[1]
    at_or_above_all = n - rankdata(all_scores, axis=1, method="min")[:, :n_pos] + 1
    at_or_above_pos = n_pos - rankdata(pos, axis=1, method="min") + 1
    return (at_or_above_pos / at_or_above_all).mean(axis=1)


def aupr_in_rows(s_in, s_out) -> np.ndarray:
    return _average_precision(_rows(s_in), _rows(s_out))


def aupr_out_rows(s_in, s_out) -> np.ndarray:
    return _average_precision(-_rows(s_out), -_rows(s_in))


def fpr_at_tpr_rows(s_in, s_out, tpr: float = TPR_LEVEL) -> np.ndarray:
    s_in, s_out = _rows(s_in), _rows(s_out)
    n_in = s_in.shape[1]
    k = n_in - math.ceil(tpr * n_in)  # this many ID scores may fall below the threshold
    threshold = np.sort(s_in, axis=1)[:, k]
    return (s_out >= threshold[:, None]).mean(axis=1)


METRICS: dict[str, Callable] = {"auroc": auroc_rows, "aupr_in": aupr_in_rows, "aupr_out": aupr_out_rows,
                                "fpr95": fpr_at_tpr_rows}


def metric(name: str, s_in, s_out) -> float:
    """One metric on one pair of score vectors."""
    return float(METRICS[name](s_in, s_out)[0])


def seed_bootstrap(fn: Callable, s_in: np.ndarray, s_out: np.ndarray, n_boot: int, rng
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-level bootstrap: per seed, the metric on n_boot example resamples (the same resamples
    for every seed, so that `paired` comparisons keep the pairing); returns (per-seed point values,
    per-seed replicate matrix seeds x n_boot, seed resample indices n_boot x seeds)."""
    s_in, s_out = _rows(s_in), _rows(s_out)
    n_seeds = s_in.shape[0]
    i_in = rng.integers(0, s_in.shape[1], size=(n_boot, s_in.shape[1]))
    i_out = rng.integers(0, s_out.shape[1], size=(n_boot, s_out.shape[1]))
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    point = fn(s_in, s_out)
    reps = np.stack([fn(s_in[s][i_in], s_out[s][i_out]) for s in range(n_seeds)])
    return point, reps, seed_idx


def estimate(name: str, s_in, s_out, level: float, n_boot: int, seed: int = 0):
    """Seed-averaged metric with a two-level percentile bootstrap interval."""
    from ..stats import Estimate

    s_in, s_out = _rows(s_in), _rows(s_out)
    point, reps, seed_idx = seed_bootstrap(METRICS[name], s_in, s_out, n_boot, np.random.default_rng(seed))
    boots = reps[seed_idx, np.arange(n_boot)[:, None]].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(point.mean()), float(lo), float(hi), level, s_in.shape[0],
                    s_in.shape[1] + s_out.shape[1])


def compare(name: str, cand: dict, base: dict, level: float, alpha: float, n_boot: int, seed: int = 0):
    """Candidate - baseline metric on the same ID and OOD inputs, paired bootstrap.

    The p-value is twice the smaller tail share of replicate differences on either side of zero
    (a metric over a whole set is not a per-example mean, so the sign-flip test does not apply)."""
    from ..stats import Comparison

    fn = METRICS[name]
    # the same seed gives both models the same example resamples: the pairing is kept
    pc, rc, sc = seed_bootstrap(fn, cand["in"], cand["out"], n_boot, np.random.default_rng(seed))
    pb, rb, _ = seed_bootstrap(fn, base["in"], base["out"], n_boot, np.random.default_rng(seed))
    sb = np.random.default_rng(seed + 1).integers(0, rb.shape[0], size=(n_boot, rb.shape[0]))
    cols = np.arange(n_boot)[:, None]
    diffs = rc[sc, cols].mean(axis=1) - rb[sb, cols].mean(axis=1)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)) + 1 / (n_boot + 1))
    c, b = float(pc.mean()), float(pb.mean())
    return Comparison(c, b, c - b, float(lo), float(hi), float(p), level, alpha,
                      min(rc.shape[0], rb.shape[0]), _rows(cand["in"]).shape[1] + _rows(cand["out"]).shape[1])
