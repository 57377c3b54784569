"""Out-of-distribution detection: MSP scores on a far-OOD set, AUROC with intervals.

Convention: in-distribution is the positive class and a higher score means "more
in-distribution", so AUROC is the probability that a random in-distribution example scores above
a random OOD example (ties count one half).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..risk import CheckInfo

MSP_FAR_OOD = CheckInfo(
    suite="ood", check="msp_far_ood_auroc", title="Far-OOD detection by maximum softmax probability",
    metric="AUROC (in-distribution positive)", rmf=("MEASURE 2.5", "MEASURE 2.6"),
    characteristic="safe", impact="moderate",
    explanation="How well the model's confidence (maximum softmax probability) separates test "
                "inputs from far out-of-distribution inputs (uniform noise and natural-image "
                "patches). 0.5 is chance: the model is as confident on garbage as on real inputs.",
    mitigation="Put an OOD monitor in front of the model in production (energy or Mahalanobis "
               "scores), set an abstention threshold, and train with outlier exposure.",
)

MSP_COMPARISON = CheckInfo(
    suite="ood", check="msp_far_ood_auroc_vs_baseline", title="Far-OOD AUROC, SwiGLU candidate vs baseline",
    metric="AUROC difference", rmf=("MEASURE 2.5", "MEASURE 2.6"), characteristic="safe",
    impact="moderate",
    explanation="Whether the SwiGLU candidate separates in-distribution from far-OOD inputs worse "
                "than a baseline architecture.",
    mitigation="If the candidate is worse, rely on a dedicated OOD detector rather than its "
               "softmax confidence.",
)

FAR_OOD_DESCRIPTION = ("far OOD: half uniform noise in [0, 1], half grey patches cut from the two "
                       "sample photographs that ship with scikit-learn, average-pooled to the "
                       "input size; seeded, built offline")


def far_ood_set(n: int, input_shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """n inputs of `input_shape` in [0, 1] that belong to no class of the data."""
    from sklearn.datasets import load_sample_images

    c, h, w = input_shape
    g = np.random.default_rng(seed)
    n_noise = n // 2
    noise = g.random((n_noise, c, h, w), dtype=np.float32)
    photos = [img.astype(np.float32) / 255.0 for img in load_sample_images().images]  # (H, W, 3)
    scale = 4  # cut 4h x 4w patches, pool them down: natural image statistics at the input size
    patches = []
    for i in range(n - n_noise):
        photo = photos[i % len(photos)]
        top = g.integers(0, photo.shape[0] - scale * h)
        left = g.integers(0, photo.shape[1] - scale * w)
        patch = photo[top:top + scale * h, left:left + scale * w]  # (4h, 4w, 3)
        patch = patch.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))  # (h, w, 3)
        if c == 3:
            patches.append(patch.transpose(2, 0, 1))
        else:
            grey = patch.mean(axis=2)
            patches.append(np.repeat(grey[None], c, axis=0))
    out = np.concatenate([noise, np.stack(patches).astype(np.float32)]) if patches else noise
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


def msp_scores(logits: torch.Tensor) -> np.ndarray:
    return F.softmax(logits.float(), dim=1).max(dim=1).values.numpy()


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """P(score_in > score_out) + 0.5 P(tie), by the Mann-Whitney U statistic."""
    from scipy.stats import rankdata

    scores_in, scores_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    if len(scores_in) == 0 or len(scores_out) == 0:
        raise ValueError("AUROC needs at least one in-distribution and one OOD score")
    ranks = rankdata(np.concatenate([scores_in, scores_out]))  # average ranks for ties
    u = ranks[: len(scores_in)].sum() - len(scores_in) * (len(scores_in) + 1) / 2
    return float(u / (len(scores_in) * len(scores_out)))


def bootstrap_auroc(scores_in: np.ndarray, scores_out: np.ndarray, n_boot: int, seed: int = 0
                    ) -> np.ndarray:
    """Bootstrap replicates of the seed-averaged AUROC. scores_*: (seeds x examples)."""
    rng = np.random.default_rng(seed)
    s = scores_in.shape[0]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        seeds = rng.integers(0, s, size=s)
        i_in = rng.integers(0, scores_in.shape[1], size=scores_in.shape[1])
        i_out = rng.integers(0, scores_out.shape[1], size=scores_out.shape[1])
        reps[b] = np.mean([auroc(scores_in[k, i_in], scores_out[k, i_out]) for k in seeds])
    return reps


def auroc_estimate(scores_in: np.ndarray, scores_out: np.ndarray, level: float, n_boot: int,
                   seed: int = 0):
    """Seed-averaged AUROC with a percentile bootstrap interval over seeds and examples."""
    from ..stats import Estimate

    value = float(np.mean([auroc(a, b) for a, b in zip(scores_in, scores_out)]))
    reps = bootstrap_auroc(scores_in, scores_out, n_boot, seed)
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value, float(lo), float(hi), level, scores_in.shape[0],
                    scores_in.shape[1] + scores_out.shape[1])


def compare_auroc(cand: dict, base: dict, level: float, alpha: float, n_boot: int, seed: int = 0):
    """Candidate - baseline AUROC, resampling the same in- and out-examples for both models.

    The p-value is the paired bootstrap's: twice the smaller tail share of replicates on either
    side of zero (AUROC is not a per-example mean, so the sign-flip test does not apply).
    """
    from ..stats import Comparison

    rng = np.random.default_rng(seed)
    value_c = float(np.mean([auroc(a, b) for a, b in zip(cand["in"], cand["out"])]))
    value_b = float(np.mean([auroc(a, b) for a, b in zip(base["in"], base["out"])]))
    n_in, n_out = cand["in"].shape[1], cand["out"].shape[1]
    reps = np.empty(n_boot)
    for i in range(n_boot):
        i_in, i_out = rng.integers(0, n_in, n_in), rng.integers(0, n_out, n_out)
        sc = rng.integers(0, cand["in"].shape[0], cand["in"].shape[0])
        sb = rng.integers(0, base["in"].shape[0], base["in"].shape[0])
        reps[i] = (np.mean([auroc(cand["in"][k, i_in], cand["out"][k, i_out]) for k in sc])
                   - np.mean([auroc(base["in"][k, i_in], base["out"][k, i_out]) for k in sb]))
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min(np.mean(reps <= 0), np.mean(reps >= 0)) + 1 / (n_boot + 1))
    return Comparison(value_c, value_b, value_c - value_b, float(lo), float(hi), float(p), level,
                      alpha, min(cand["in"].shape[0], base["in"].shape[0]), n_in + n_out)


def roc_points(scores_in: np.ndarray, scores_out: np.ndarray, max_points: int = 60) -> list[list[float]]:
    """(false positive rate, true positive rate) pairs, in-distribution positive, thinned for plots."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    fpr, tpr, _ = roc_curve(labels, np.r_[scores_in, scores_out])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]
