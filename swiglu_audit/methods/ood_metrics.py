"""OOD detection metrics, with the in-distribution (ID) class positive, and their intervals
(t-intervals over seeds, the inputs' part from bootstrap resamples).

Convention, stated in every report: a detector's score is higher for inputs it believes are
in-distribution.
- AUROC: P(score of a random ID input > score of a random OOD input), ties counting one half.
- AUPR-IN: average precision with ID positive, ranked by the score.
- AUPR-OUT: average precision with OOD positive, ranked by the negated score.
- FPR@95TPR: the share of OOD inputs accepted at the largest threshold that still accepts at least
  95% of ID inputs.
Ties are handled exactly (average precision counts tied scores as one threshold, as scikit-learn
does). Every metric is computed from sample weights: a bootstrap replicate is the same scores
with resampling counts as weights, so a thousand replicates cost a few array operations instead
of a thousand sorts.
"""

from __future__ import annotations

import functools

import numpy as np

from . import replicate_store

TPR_LEVEL = 0.95


def _as_1d(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("each side needs at least one score")
    return a


def _cumulative_weights(scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted scores, B x (n + 1) weight below each sorted position): one sort and one cumulative
    sum that any number of threshold look-ups share. Integer weights (resampling counts) sum as
    integers, exactly as float64 would sum them, with half the memory traffic."""
    order = np.argsort(scores, kind="stable")
    below = np.zeros((len(weights), len(order) + 1), dtype=weights.dtype)
    np.cumsum(weights[:, order], axis=1, out=below[:, 1:])
    return scores[order], below


def _at_or_above(cumulative: tuple[np.ndarray, np.ndarray], thresholds: np.ndarray,
                 strictly: bool = False) -> np.ndarray:
    sorted_scores, below = cumulative
    idx = np.searchsorted(sorted_scores, thresholds, side="right" if strictly else "left")
    if idx.ndim == 1:  # one threshold vector for every row: a column gather
        return below[:, -1:] - below[:, idx]
    # a row of thresholds per replicate
    return below[:, -1:] - np.take_along_axis(below, np.broadcast_to(idx, (len(below), idx.shape[-1])), axis=1)


def _weight_at_or_above(scores: np.ndarray, weights: np.ndarray, thresholds: np.ndarray,
                        strictly: bool = False) -> np.ndarray:
    """For each row of `weights` (B x n, over `scores`) and each threshold (T,) or (B x T): the
    total weight of scores >= threshold (> threshold when `strictly`)."""
    return _at_or_above(_cumulative_weights(scores, weights), thresholds, strictly)


def _total(weights: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """Each replicate's total weight, in float64 whatever the weights' type (integer counts sum
    exactly, and a product of two totals cannot overflow a 32-bit integer)."""
    return weights.sum(axis=1, keepdims=keepdims, dtype=np.float64)


def weighted_auroc(s_in, s_out, w_in, w_out) -> np.ndarray:
    cumulative = _cumulative_weights(s_out, w_out)
    above = _at_or_above(cumulative, s_in)  # OOD weight >= each ID score
    strictly_above = _at_or_above(cumulative, s_in, strictly=True)
    # OOD weight strictly below each ID score, plus half the tied weight
    wins = _total(w_out, keepdims=True) - above + 0.5 * (above - strictly_above)
    return (w_in * wins).sum(axis=1) / (_total(w_in) * _total(w_out))


def _weighted_average_precision(s_pos, s_neg, w_pos, w_neg) -> np.ndarray:
    """(1 / W_pos) * sum over positives of weight * precision at the positive's own score."""
    tp = _weight_at_or_above(s_pos, w_pos, s_pos)
    fp = _weight_at_or_above(s_neg, w_neg, s_pos)
    precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape), where=(tp + fp) > 0)
    return (w_pos * precision).sum(axis=1) / _total(w_pos)


def weighted_aupr_in(s_in, s_out, w_in, w_out) -> np.ndarray:
    return _weighted_average_precision(s_in, s_out, w_in, w_out)


def weighted_aupr_out(s_in, s_out, w_in, w_out) -> np.ndarray:
    return _weighted_average_precision(-s_out, -s_in, w_out, w_in)


def weighted_fpr_at_tpr(s_in, s_out, w_in, w_out, tpr: float = TPR_LEVEL) -> np.ndarray:
    order = np.argsort(-s_in, kind="stable")  # descending
    accepted = np.cumsum(w_in[:, order], axis=1)
    # the first (largest) score at which the accepted ID weight reaches the level; a tiny slack
    # keeps float rounding of the weights from skipping the exact 95% point
    first = np.argmax(accepted >= tpr * _total(w_in, keepdims=True) - 1e-9, axis=1)
    thresholds = s_in[order][first]
    return _weight_at_or_above(s_out, w_out, thresholds[:, None])[:, 0] / _total(w_out)


WEIGHTED = {"auroc": weighted_auroc, "aupr_in": weighted_aupr_in, "aupr_out": weighted_aupr_out,
            "fpr95": weighted_fpr_at_tpr}
METRICS = tuple(WEIGHTED)


def metric(name: str, s_in, s_out) -> float:
    """One metric on one pair of score vectors."""
    s_in, s_out = _as_1d(s_in), _as_1d(s_out)
    return float(WEIGHTED[name](s_in, s_out, np.ones((1, len(s_in))), np.ones((1, len(s_out))))[0])


def per_seed(name: str, s_in, s_out) -> np.ndarray:
    """The metric of each seed's row of two (seeds x examples) matrices."""
    s_in, s_out = np.atleast_2d(s_in), np.atleast_2d(s_out)
    return np.array([metric(name, a, b) for a, b in zip(s_in, s_out)])


def _resample_counts(n: int, n_boot: int, rng) -> np.ndarray:
    """n_boot x n: how often each of n examples is drawn in each resample (integers: the metrics
    sum them exactly)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def seed_bootstrap(name: str, s_in, s_out, n_boot: int, rng):
    """Per seed, the metric on n_boot example resamples (the same resamples for every seed, and
    for another model given the same rng seed, so that comparisons keep the pairing over
    examples); returns (per-seed point values, replicate matrix seeds x n_boot)."""
    s_in, s_out = np.atleast_2d(np.asarray(s_in, float)), np.atleast_2d(np.asarray(s_out, float))
    w_in = _resample_counts(s_in.shape[1], n_boot, rng)
    w_out = _resample_counts(s_out.shape[1], n_boot, rng)
    return _bootstrap_with(name, s_in, s_out, w_in, w_out)


def _bootstrap_with(name: str, s_in: np.ndarray, s_out: np.ndarray, w_in: np.ndarray, w_out: np.ndarray):
    reps = np.stack([WEIGHTED[name](s_in[k], s_out[k], w_in, w_out) for k in range(s_in.shape[0])])
    return per_seed(name, s_in, s_out), reps


@functools.lru_cache(maxsize=4)
def _resamples(n_in: int, n_out: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The resampling counts `seed_bootstrap` draws from a fresh generator seeded `seed`: the same
    for every metric, detector and OOD set of one size, so drawn once (read-only)."""
    rng = np.random.default_rng(seed)
    w_in, w_out = _resample_counts(n_in, n_boot, rng), _resample_counts(n_out, n_boot, rng)
    w_in.flags.writeable = w_out.flags.writeable = False
    return w_in, w_out


def _replicates(name: str, s_in, s_out, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """seed_bootstrap with a fresh generator from `seed`, once for the same scores (in this
    process and, through the audit's cache, across audits): a candidate compared with every
    baseline, and its estimate, share its replicates."""
    s_in, s_out = np.atleast_2d(np.asarray(s_in, float)), np.atleast_2d(np.asarray(s_out, float))

    def compute():
        point, reps = _bootstrap_with(name, s_in, s_out, *_resamples(s_in.shape[1], s_out.shape[1], n_boot, seed))
        return {"point": point, "replicates": reps}

    out = replicate_store.replicates(f"ood_metrics.{name}", {"in": s_in, "out": s_out},
                                     {"n_boot": n_boot, "seed": seed}, compute)
    return out["point"], out["replicates"]


def estimate(name: str, s_in, s_out, level: float, n_boot: int, seed: int = 0):
    """Seed-averaged metric with a t-interval over seeds and examples; the example part of its
    variance from `n_boot` example resamples (stats.replicate_estimate)."""
    from ..verdicts.stats import replicate_estimate

    s_in, s_out = np.atleast_2d(s_in), np.atleast_2d(s_out)
    point, reps = _replicates(name, s_in, s_out, n_boot, seed)
    floor = auroc_variance_floor(s_in.shape[1], s_out.shape[1]) if name == "auroc" else 0.0
    return replicate_estimate(point, reps, s_in.shape[1] + s_out.shape[1], level, bounds=(0.0, 1.0), floor=floor)


def auroc_variance_floor(n_in: int, n_out: int) -> float:
    """The least variance of an AUROC measured on n_in against n_out inputs. Resamples of a
    perfectly separated set all give 1 (an interval [1, 1] from 10 inputs), which is no proof that
    the detector never errs. As an Agresti-Coull share adds pseudo-counts, one pseudo-input of each
    side is ranked wrong (below, above every other input), and Hanley and McNeil's variance is
    read at that AUROC, n_in n_out / ((n_in + 1)(n_out + 1)): a standard error of about 0.079 from
    10 against 20 inputs, 0.0024 from 360 against 720. It binds only where the separation is about
    as good as that or better; below, the bootstrap's own variance is larger."""
    if n_in < 1 or n_out < 1:
        return 0.0
    a = n_in * n_out / ((n_in + 1) * (n_out + 1))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (n_in - 1) * (q1 - a * a) + (n_out - 1) * (q2 - a * a)) / (n_in * n_out)


def compare(name: str, cand: dict, base: dict, level: float, alpha: float, n_boot: int, seed: int = 0):
    """Candidate - baseline metric on the same ID and OOD inputs (stats.replicate_comparison)."""
    from ..verdicts.stats import replicate_comparison

    # the same seed gives both models the same example resamples: the pairing over examples is kept
    pc, rc = _replicates(name, cand["in"], cand["out"], n_boot, seed)
    pb, rb = _replicates(name, base["in"], base["out"], n_boot, seed)
    return replicate_comparison(pc, rc, pb, rb, np.shape(cand["in"])[-1] + np.shape(cand["out"])[-1], level, alpha,
                                bounds=(-1.0, 1.0))



def auroc(scores_in, scores_out) -> float:
    """P(score_in > score_out) + 0.5 P(tie), by the Mann-Whitney U statistic."""
    return metric("auroc", scores_in, scores_out)


def auroc_estimate(scores_in: np.ndarray, scores_out: np.ndarray, level: float, n_boot: int, seed: int = 0):
    """Seed-averaged AUROC with a t-interval over seeds and examples; scores_*: (seeds x examples)."""
    return estimate("auroc", scores_in, scores_out, level, n_boot, seed)


def compare_auroc(cand: dict, base: dict, level: float, alpha: float, n_boot: int, seed: int = 0):
    """Candidate - baseline AUROC on the same inputs; dicts of (seeds x examples) "in" and "out"."""
    return compare("auroc", cand, base, level, alpha, n_boot, seed)


def roc_points(scores_in: np.ndarray, scores_out: np.ndarray, max_points: int = 60) -> list[list[float]]:
    """(false positive rate, true positive rate) pairs, in-distribution positive, thinned for plots."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    fpr, tpr, _ = roc_curve(labels, np.r_[scores_in, scores_out])
    return thin(fpr, tpr, max_points)


def thin(xs, ys, max_points: int = 60) -> list[list[float]]:
    """At most `max_points` (x, y) pairs of a long curve, first and last kept, for plots."""
    keep = np.unique(np.linspace(0, len(xs) - 1, min(max_points, len(xs))).round().astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in keep]
