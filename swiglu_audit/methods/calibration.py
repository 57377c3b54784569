"""Calibration and selective prediction: expected calibration error, risk-coverage curves, AURC."""

from __future__ import annotations

import numpy as np

from . import replicate_store


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)  # (0, 1/n] is bin 0
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _weighted_ece(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE under each row of example weights (B x n): sum over bins of |sum_i w_i (correct_i -
    confidence_i)| / sum_i w_i, which is expected_calibration_error with counts as weights."""
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gaps = np.zeros((len(confidence), n_bins))
    gaps[np.arange(len(confidence)), bins] = correct - confidence
    return np.abs(weights @ gaps).sum(1) / weights.sum(1)


def ece_estimate(confidence: list, correct: list, n_bins: int, level: float, n_boot: int, seed: int = 0):
    """ECE averaged over several conditions (corruptions x severities), each a (seeds x inputs)
    pair of confidence and correctness on the same inputs, with a t-interval over seeds and
    inputs; the inputs' part from resamples shared by every condition and seed."""
    from ..verdicts.stats import replicate_estimate

    conf = [np.atleast_2d(np.asarray(c, float)) for c in confidence]
    corr = [np.atleast_2d(np.asarray(c, float)) for c in correct]
    n_seeds, n = conf[0].shape

    def compute():
        rng = np.random.default_rng(seed)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
        per_seed = [np.mean([expected_calibration_error(cf[k], cr[k], n_bins) for cf, cr in zip(conf, corr)])
                    for k in range(n_seeds)]
        reps = np.stack([np.mean([_weighted_ece(cf[k], cr[k], weights, n_bins) for cf, cr in zip(conf, corr)],
                                 axis=0) for k in range(n_seeds)])
        return {"per_seed": np.asarray(per_seed, float), "replicates": reps}

    inputs = {f"confidence/{i}": c for i, c in enumerate(conf)} | {f"correct/{i}": c for i, c in enumerate(corr)}
    out = replicate_store.replicates("calibration.ece", inputs, {"n_bins": n_bins, "n_boot": n_boot, "seed": seed},
                                     compute)
    return replicate_estimate(out["per_seed"], out["replicates"], n, level, bounds=(0.0, 1.0))


def risk_coverage(scores, correct) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) when accepting the k most confident inputs, k = 1..n.

    Tied scores are accepted together in random order, so the risk inside a tie group is its
    expectation: the errors before the group plus the group's error rate times the accepted share."""
    scores, errors = np.asarray(scores, float), 1.0 - np.asarray(correct, float)
    order = np.argsort(-scores, kind="stable")
    s, e = scores[order], errors[order]
    n = len(s)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    sizes = np.diff(np.r_[starts, n])
    group_errors = np.add.reduceat(e, starts)
    before = np.r_[0.0, np.cumsum(group_errors)[:-1]]
    group = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(n) - starts[group] + 1  # 1-based position inside the tie group
    expected_errors = before[group] + group_errors[group] * position / sizes[group]
    k = np.arange(1, n + 1)
    return k / n, expected_errors / k


def aurc(scores, correct) -> float:
    """Area under the risk-coverage curve: the mean risk over all coverages (lower is better)."""
    return float(risk_coverage(scores, correct)[1].mean())


def aurc_floor(value: float, errors: float, n: int) -> float:
    """The least input variance of a seed-averaged AURC `value` with `errors` errors (mean over
    seeds) among n inputs: resamples of inputs without an error all read AURC 0, which is no
    proof of zero risk. It is the variance of the error share, an Agresti-Coull share
    (`share_floor`), times the square of the AURC per error share, smoothed the same way: an error
    at a uniformly random confidence rank adds 1/n to the AURC on average (the mean over ranks j
    of sum_{i >= j} 1 / (i n)), so the 2 pseudo-errors add 2/n and the factor is
    (n AURC + 2) / (errors + 2). With no error seen the floor is the error share's (0 of 40: an
    interval up to about 0.07); as errors are seen their ranking takes over, and the floor sinks
    below the resampling's own variance for a score that ranks them last."""
    from ..verdicts.stats import share_floor

    per_error = (n * value + 2) / (errors + 2)
    return share_floor(errors, n) * per_error ** 2


def aurc_estimate(scores: np.ndarray, correct: np.ndarray, level: float, n_boot: int, seed: int = 0):
    """Seed-averaged AURC of (seeds x inputs) matrices, with a t-interval over seeds and inputs
    whose input part comes from bootstrap resamples shared by every seed (stats.replicate_estimate),
    as every other metric of the audit that is not a mean over inputs; its input variance at
    least `aurc_floor`'s."""
    from ..verdicts.stats import replicate_estimate

    scores, correct = np.asarray(scores, float), np.asarray(correct, float)
    n_seeds, n = np.shape(correct)

    def compute():
        rng = np.random.default_rng(seed)
        resamples = np.stack([rng.integers(0, n, n) for _ in range(n_boot)])
        reps = np.stack([aurc_rows(scores[k][resamples], correct[k][resamples]) for k in range(n_seeds)])
        return {"per_seed": np.array([aurc(s, c) for s, c in zip(scores, correct)]), "replicates": reps}

    out = replicate_store.replicates("calibration.aurc", {"scores": scores, "correct": correct},
                                     {"n_boot": n_boot, "seed": seed}, compute)
    floor = aurc_floor(float(np.mean(out["per_seed"])), float((1.0 - correct).sum(1).mean()), n)
    return replicate_estimate(out["per_seed"], out["replicates"], n, level, bounds=(0.0, 1.0), floor=floor)


def aurc_rows(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """`aurc` of each row of two (B x n) matrices at once (the bootstrap's replicates), ties
    handled as `risk_coverage` handles them."""
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    e = 1.0 - np.take_along_axis(correct, order, axis=1)
    rows, n = s.shape
    positions = np.broadcast_to(np.arange(n), (rows, n))
    new_group = np.concatenate([np.ones((rows, 1), bool), np.diff(s, axis=1) != 0], axis=1)
    ends_group = np.concatenate([new_group[:, 1:], np.ones((rows, 1), bool)], axis=1)
    start = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)  # first index of each tie group
    end = np.minimum.accumulate(np.where(ends_group, positions + 1, n)[:, ::-1], axis=1)[:, ::-1]  # one past its last
    errors_before = np.concatenate([np.zeros((rows, 1)), np.cumsum(e, axis=1)], axis=1)  # errors in [0, j)
    before = np.take_along_axis(errors_before, start, axis=1)
    in_group = np.take_along_axis(errors_before, end, axis=1) - before
    expected = before + in_group * (positions - start + 1) / (end - start)
    return (expected / np.arange(1, n + 1)).mean(axis=1)
