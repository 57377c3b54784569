"""Covariate shift: image corruptions at graded severities, calibration, selective prediction.

Corruptions work on (N, C, H, W) inputs in [0, 1] of any size; their parameters are scaled to the
image size where it matters (blur, translation) and tuned so that severity 5 is hard but not
destroyed on 8 x 8 digits. Severity 0 is the identity. Random corruptions are seeded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SEVERITIES = (1, 2, 3, 4, 5)

# Parameter per severity 1..5 (index 0 is unused: severity 0 is the identity).
_PARAMS = {
    "gaussian_noise": (0, 0.05, 0.1, 0.15, 0.22, 0.3),  # noise standard deviation
    "blur": (0, 0.3, 0.5, 0.7, 0.9, 1.2),  # Gaussian sigma in pixels at 8 x 8 (scaled to the image size)
    "contrast": (1, 0.75, 0.55, 0.4, 0.28, 0.18),  # factor on the deviation from the image mean
    "brightness": (0, 0.1, 0.2, 0.3, 0.45, 0.6),  # added to every pixel
    "rotation": (0, 6, 12, 18, 24, 30),  # degrees, direction alternating by input
    "translation": (0, 0.4, 0.8, 1.2, 1.6, 2.0),  # pixels at 8 x 8 (scaled to the image size)
    "pixelation": (1, 0.875, 0.75, 0.625, 0.5, 0.375),  # share of the resolution kept (7 to 3 of 8)
    "salt_and_pepper": (0, 0.02, 0.05, 0.08, 0.12, 0.17),  # share of pixels set to 0 or 1
    # for (N, D) feature vectors (they need the training inputs as `reference`)
    "feature_noise": (0, 0.1, 0.2, 0.3, 0.5, 0.8),  # Gaussian noise, in each feature's own std
    "missing_imputed": (0, 0.05, 0.1, 0.2, 0.3, 0.5),  # share of features lost, imputed with the training mean
    "scaling_drift": (0, 0.05, 0.1, 0.2, 0.3, 0.5),  # each feature scaled by 1 +- this (a unit or sensor drift)
}
CORRUPTIONS = tuple(_PARAMS)
# The data each corruption means something for: blurring or rotating a feature vector does not.
TABULAR_CORRUPTIONS = ("feature_noise", "missing_imputed", "scaling_drift")
CORRUPTION_MODALITY = {name: "tabular" if name in TABULAR_CORRUPTIONS else "image" for name in CORRUPTIONS}


def applicable_corruptions(names, modality: str) -> tuple[list[str], list[str]]:
    """(the configured corruptions that apply to this kind of data, those that do not). Tabular
    data whose configuration names no tabular corruption (the default list is the image one)
    gets all three tabular ones."""
    applied = [n for n in names if CORRUPTION_MODALITY[n] == modality]
    skipped = [n for n in names if CORRUPTION_MODALITY[n] != modality]
    if modality == "tabular" and not applied:
        applied = list(TABULAR_CORRUPTIONS)
    return applied, skipped


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0,
            reference: torch.Tensor | None = None) -> torch.Tensor:
    if name not in _PARAMS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity == 0:
        return x.clone()
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 0 to 5, got {severity}")
    p = _PARAMS[name][severity]
    g = torch.Generator().manual_seed(seed * 1000 + severity)
    scale = x.shape[-1] / 8.0  # pixel-sized parameters were tuned at width 8
    if name == "gaussian_noise":
        out = x + p * torch.randn(x.shape, generator=g)
    elif name == "blur":
        out = _gaussian_blur(x, p * scale)
    elif name == "contrast":
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)
        out = (x - mean) * p + mean
    elif name == "brightness":
        out = x + p
    elif name == "rotation":
        sign = torch.where(torch.arange(len(x)) % 2 == 0, 1.0, -1.0)
        out = _affine(x, angle=sign * math.radians(p), shift=torch.zeros(len(x), 2))
    elif name == "translation":
        angle = torch.rand(len(x), generator=g) * 2 * math.pi  # a random direction per input
        pixels = p * scale
        shift = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * pixels * 2 / x.shape[-1]
        out = _affine(x, angle=torch.zeros(len(x)), shift=shift)
    elif name == "pixelation":
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, round(h * p)), max(1, round(w * p))), mode="area")
        out = F.interpolate(small, size=(h, w), mode="nearest")
    elif name == "salt_and_pepper":
        u = torch.rand(x.shape, generator=g)
        out = torch.where(u < p / 2, 0.0, torch.where(u > 1 - p / 2, 1.0, x))
    else:
        out = _tabular(x, name, p, g, reference)
    return out.clamp(0.0, 1.0)


def _tabular(x: torch.Tensor, name: str, p: float, g: torch.Generator, reference: torch.Tensor | None) -> torch.Tensor:
    if reference is None:
        raise ValueError(f"corruption {name!r} needs the training inputs as `reference`")
    flat_ref = reference.reshape(len(reference), -1)
    mean, std = flat_ref.mean(0).reshape(x.shape[1:]), flat_ref.std(0).reshape(x.shape[1:])
    if name == "feature_noise":
        return x + p * std * torch.randn(x.shape, generator=g)
    if name == "missing_imputed":
        lost = torch.rand(x.shape, generator=g) < p
        return torch.where(lost, mean.expand_as(x), x)
    sign = torch.where(torch.rand(x.shape[1:], generator=g) < 0.5, -1.0, 1.0)  # scaling_drift
    return x * (1 + p * sign)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _affine(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)  # (0, 1/n] is bin 0
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


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


def aurc_estimate(scores: np.ndarray, correct: np.ndarray, level: float, n_boot: int, seed: int = 0):
    """Seed-averaged AURC of (seeds x inputs) matrices, with a bootstrap interval that resamples
    seeds and test inputs together, as every other estimate of the audit does."""
    from ..stats import Estimate

    rng = np.random.default_rng(seed)
    n_seeds, n = np.shape(correct)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        boots.append(np.mean([aurc(scores[k, idx], correct[k, idx]) for k in rng.integers(0, n_seeds, n_seeds)]))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    value = float(np.mean([aurc(s, c) for s, c in zip(scores, correct)]))
    return Estimate(value, float(lo), float(hi), level, n_seeds, n)
