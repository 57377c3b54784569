"""Drift of live (production) inputs: two-sample tests against the training data, prediction
drift, and label-free accuracy estimates. Plain functions of arrays; torch-free.

- Input drift: a kernel two-sample test, MMD with an RBF kernel (bandwidth by the median
  heuristic) and a permutation p-value (Gretton et al. 2012). alibi-detect's MMDDrift does the same
  with TensorFlow or PyTorch backends and a download-heavy dependency tree; the test is forty lines
  of numpy and needs no backend, so it is written here. On (N, D) tabular data each feature also
  gets a two-sample Kolmogorov-Smirnov test (scipy), with the Benjamini-Hochberg false-discovery
  correction over the features. The verdict reads both tests, alpha split between them
  (`input_drift_p`).
- Prediction drift: a chi-square test of the predicted-label counts on the live inputs against
  those on the test split (scipy's contingency test).
- Label-free accuracy: ATC (Garg et al. 2022, "Leveraging unlabeled data to predict
  out-of-distribution performance"): the confidence threshold above which the share of validation
  inputs equals the validation accuracy; the live accuracy estimate is the share of live inputs
  above it. Intervals come from resampling validation and live inputs (the same resamples for
  every seed and model, so comparisons keep the pairing).
"""

from __future__ import annotations

import numpy as np

RESAMPLE_ROWS = 20_000  # the most inputs of one set a bootstrap resample draws (see atc_replicates)


def _flat(x, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, features) float64 of `x`, or of its `rows` only: the rows are taken first, so a large
    (memory-mapped) split is never converted whole."""
    x = x if rows is None else x[np.sort(rows)]
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def mmd_permutation_test(x_ref, x_live, n_permutations: int = 500, max_samples: int = 400,
                         seed: int = 0) -> dict:
    """Unbiased MMD^2 between two samples (RBF kernel, median-heuristic bandwidth) and its
    permutation p-value: (1 + permutations at least as large) / (1 + permutations). At most
    `max_samples` of each sample are used (drawn at random), which bounds the kernel matrix."""
    rng = np.random.default_rng(seed)
    a = _flat(x_ref, rng.choice(len(x_ref), min(len(x_ref), max_samples), replace=False))
    b = _flat(x_live, rng.choice(len(x_live), min(len(x_live), max_samples), replace=False))
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("the inputs of the two-sample test hold NaN or infinite values")
    pooled = np.concatenate([a, b])
    sq = np.sum(pooled ** 2, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    off = d2[np.triu_indices(len(pooled), 1)]
    bandwidth2 = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    k = np.exp(-d2 / bandwidth2)
    m = len(a)

    def statistic(order: np.ndarray) -> float:
        kk = k[np.ix_(order, order)]
        kxx, kyy, kxy = kk[:m, :m], kk[m:, m:], kk[:m, m:]
        n = len(order) - m
        return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                     - 2 * kxy.mean())

    observed = statistic(np.arange(len(pooled)))
    null = np.array([statistic(rng.permutation(len(pooled))) for _ in range(n_permutations)])
    p = (1 + int(np.sum(null >= observed))) / (1 + n_permutations)
    return {"mmd2": observed, "p_value": p, "n_ref": m, "n_live": len(b), "bandwidth": float(np.sqrt(bandwidth2)),
            "permutations": n_permutations}


def feature_drift(x_ref, x_live, alpha: float) -> dict:
    """Per feature, a two-sample Kolmogorov-Smirnov test; Benjamini-Hochberg adjusted p-values and
    the features that drift at false-discovery rate alpha."""
    from scipy.stats import false_discovery_control, ks_2samp

    a, b = _flat(x_ref), _flat(x_live)
    p = np.array([ks_2samp(a[:, j], b[:, j]).pvalue for j in range(a.shape[1])])
    adjusted = false_discovery_control(p, method="bh")
    drifted = [int(j) for j in np.flatnonzero(adjusted < alpha)]
    return {"p_values": p.tolist(), "adjusted": adjusted.tolist(), "drifted_features": drifted,
            "min_adjusted_p": float(adjusted.min())}


def input_drift_p(mmd_p: float, min_adjusted_ks_p: float | None = None) -> dict:
    """One p-value for input drift from both tests, alpha split between them (Bonferroni): the
    smaller p-value times the number of tests, capped at 1, so that it falls below alpha exactly
    when either test's falls below alpha / 2. The MMD alone misses a shift of one narrow feature
    among many (the kernel's median bandwidth is set by the wide ones); the KS tests see it.
    Without per-feature tests (images), the MMD's p-value as it is. `decided_by` names the test
    with the smaller p-value."""
    if min_adjusted_ks_p is None:
        return {"p_value": float(mmd_p), "tests": 1, "decided_by": "mmd"}
    smallest = min(mmd_p, min_adjusted_ks_p)
    return {"p_value": float(min(1.0, 2 * smallest)), "tests": 2,
            "decided_by": "mmd" if mmd_p <= min_adjusted_ks_p else "ks"}


def prediction_drift(predicted_ref, predicted_live, n_classes: int) -> dict:
    """Chi-square test of the predicted-label counts, live against reference."""
    from scipy.stats import chi2_contingency

    ref = np.bincount(np.asarray(predicted_ref), minlength=n_classes)
    live = np.bincount(np.asarray(predicted_live), minlength=n_classes)
    keep = (ref + live) > 0
    table = np.stack([ref[keep], live[keep]])
    if table.shape[1] < 2:  # one class predicted throughout: no distribution to compare
        return {"p_value": 1.0, "statistic": 0.0, "ref_share": (ref / ref.sum()).tolist(),
                "live_share": (live / live.sum()).tolist()}
    result = chi2_contingency(table)
    return {"p_value": float(result.pvalue), "statistic": float(result.statistic),
            "ref_share": (ref / ref.sum()).tolist(), "live_share": (live / live.sum()).tolist()}


def confidence_scores(logits) -> np.ndarray:
    """ATC's score, a monotone form of the max-softmax probability that never saturates:
    -log(sum over the other classes of exp(logit - max logit)), in float64. The softmax itself
    reads exactly 1.0 in float32 once the top logit leads by about 17, and ties at 1.0 would put
    the threshold there and every estimate at 0."""
    z = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(z).all():
        raise ValueError("the model's logits hold NaN or infinite values: no confidence can be read from them")
    top = z.argmax(1)
    rest = z - z[np.arange(len(z)), top][:, None]
    rest[np.arange(len(z)), top] = -np.inf
    m = rest.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(rest - m).sum(1)))


def atc_threshold(score_val, correct_val) -> float:
    """The score above which the share of validation inputs equals the validation accuracy."""
    score_val = np.asarray(score_val, float)
    accuracy = float(np.mean(correct_val))
    return float(np.quantile(score_val, 1 - accuracy))


def atc_estimate(score_val, correct_val, score_live) -> float:
    """ATC's estimate of accuracy on unlabelled inputs: their share above the validation threshold."""
    return float(np.mean(np.asarray(score_live, float) > atc_threshold(score_val, correct_val)))


def atc_replicates(score_val: np.ndarray, correct_val: np.ndarray, targets: list[np.ndarray],
                   n_boot: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per target set of inputs (each seeds x inputs): (per-seed ATC estimates, seeds x n_boot
    replicates). Every replicate resamples the validation inputs (one threshold per replicate,
    shared by all targets, so that a difference of two targets' estimates keeps the pairing) and
    each target's inputs. Resamples come from `seed` alone: two models and all seeds get the same."""
    rng = np.random.default_rng(seed)
    val_idx = rng.integers(0, score_val.shape[1], (n_boot, score_val.shape[1]))
    # resamples of at most RESAMPLE_ROWS inputs a side: the interval of a mean over more inputs
    # is that of RESAMPLE_ROWS scaled, and the index arrays stay small for a million live inputs
    target_idx = [rng.integers(0, t.shape[1], (n_boot, min(t.shape[1], RESAMPLE_ROWS))) for t in targets]
    thresholds = np.array([[atc_threshold(sv[vi], cv[vi]) for vi in val_idx] for sv, cv in zip(score_val, correct_val)])
    out = []
    for target, idx in zip(targets, target_idx):
        point = np.array([atc_estimate(sv, cv, st) for sv, cv, st in zip(score_val, correct_val, target)])
        shrink = np.sqrt(idx.shape[1] / target.shape[1])  # back to the full set's spread
        reps = np.array([point[k] + shrink * (np.array([np.mean(st[ti] > t) for ti, t in zip(idx, thresholds[k])])
                                              - point[k])
                         for k, st in enumerate(target)])
        out.append((point, reps))
    return out
