"""Covariate shift: the corruption registry, at graded severities.

Corruptions work on (N, C, H, W) inputs in [0, 1] of any size; their parameters are scaled to the
image size where it matters (blur, translation) and tuned so that severity 5 is hard but not
destroyed on 8 x 8 digits. Severity 0 is the identity. Random corruptions are seeded. The tabular
ones work on (N, D) feature vectors and need the training inputs as `reference`.

Adding a corruption is one decorated function here (its parameter per severity and the data it
applies to) plus a test in tests/test_ood.py; settings and start-up checks read the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Corruption:
    params: tuple[float, ...]  # the parameter at severity 0..5 (index 0 is unused: severity 0 is the identity)
    modality: str  # "image" or "tabular": the data it means something for
    apply: Callable[..., torch.Tensor]  # (x, parameter, generator, scale, reference) -> corrupted x


CORRUPTION_REGISTRY: dict[str, Corruption] = {}


def _corruption(name: str, params: tuple[float, ...], modality: str = "image"):
    def register(apply: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        CORRUPTION_REGISTRY[name] = Corruption(params, modality, apply)
        return apply
    return register


@_corruption("gaussian_noise", (0, 0.05, 0.1, 0.15, 0.22, 0.3))  # noise standard deviation
def _gaussian_noise(x, p, g, scale, reference):
    return x + p * torch.randn(x.shape, generator=g)


@_corruption("blur", (0, 0.3, 0.5, 0.7, 0.9, 1.2))  # Gaussian sigma in pixels at 8 x 8 (scaled to the image size)
def _blur(x, p, g, scale, reference):
    return _gaussian_blur(x, p * scale)


@_corruption("contrast", (1, 0.75, 0.55, 0.4, 0.28, 0.18))  # factor on the deviation from the image mean
def _contrast(x, p, g, scale, reference):
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    return (x - mean) * p + mean


@_corruption("brightness", (0, 0.1, 0.2, 0.3, 0.45, 0.6))  # added to every pixel
def _brightness(x, p, g, scale, reference):
    return x + p


@_corruption("rotation", (0, 6, 12, 18, 24, 30))  # degrees, direction alternating by input
def _rotation(x, p, g, scale, reference):
    sign = torch.where(torch.arange(len(x)) % 2 == 0, 1.0, -1.0)
    return _affine(x, angle=sign * math.radians(p), shift=torch.zeros(len(x), 2))


@_corruption("translation", (0, 0.4, 0.8, 1.2, 1.6, 2.0))  # pixels at 8 x 8 (scaled to the image size)
def _translation(x, p, g, scale, reference):
    angle = torch.rand(len(x), generator=g) * 2 * math.pi  # a random direction per input
    pixels = p * scale
    shift = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * pixels * 2 / x.shape[-1]
    return _affine(x, angle=torch.zeros(len(x)), shift=shift)


@_corruption("pixelation", (1, 0.875, 0.75, 0.625, 0.5, 0.375))  # share of the resolution kept (7 to 3 of 8)
def _pixelation(x, p, g, scale, reference):
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * p)), max(1, round(w * p))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


@_corruption("salt_and_pepper", (0, 0.02, 0.05, 0.08, 0.12, 0.17))  # share of pixels set to 0 or 1
def _salt_and_pepper(x, p, g, scale, reference):
    u = torch.rand(x.shape, generator=g)
    return torch.where(u < p / 2, 0.0, torch.where(u > 1 - p / 2, 1.0, x))


@_corruption("feature_noise", (0, 0.1, 0.2, 0.3, 0.5, 0.8), "tabular")  # Gaussian noise, in each feature's own std
def _feature_noise(x, p, g, scale, reference):
    return x + p * _reference_stats(x, reference)[1] * torch.randn(x.shape, generator=g)


@_corruption("missing_imputed", (0, 0.05, 0.1, 0.2, 0.3, 0.5), "tabular")  # share of features lost, imputed with the training mean
def _missing_imputed(x, p, g, scale, reference):
    mean = _reference_stats(x, reference)[0]
    lost = torch.rand(x.shape, generator=g) < p
    return torch.where(lost, mean.expand_as(x), x)


@_corruption("scaling_drift", (0, 0.05, 0.1, 0.2, 0.3, 0.5), "tabular")  # each feature scaled by 1 +- this (a unit or sensor drift)
def _scaling_drift(x, p, g, scale, reference):
    _reference_stats(x, reference)  # the same contract as the other tabular corruptions
    sign = torch.where(torch.rand(x.shape[1:], generator=g) < 0.5, -1.0, 1.0)
    return x * (1 + p * sign)


CORRUPTIONS = tuple(CORRUPTION_REGISTRY)
# The data each corruption means something for: blurring or rotating a feature vector does not.
CORRUPTION_MODALITY = {name: c.modality for name, c in CORRUPTION_REGISTRY.items()}
TABULAR_CORRUPTIONS = tuple(name for name, modality in CORRUPTION_MODALITY.items() if modality == "tabular")


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
    if name not in CORRUPTION_REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity == 0:
        return x.clone()
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 0 to 5, got {severity}")
    corruption = CORRUPTION_REGISTRY[name]
    g = torch.Generator().manual_seed(seed * 1000 + severity)
    scale = x.shape[-1] / 8.0  # pixel-sized parameters were tuned at width 8
    return corruption.apply(x, corruption.params[severity], g, scale, reference).clamp(0.0, 1.0)


def _reference_stats(x: torch.Tensor, reference: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per feature of the training inputs, shaped like one input."""
    if reference is None:
        raise ValueError("the tabular corruptions need the training inputs as `reference`")
    flat_ref = reference.reshape(len(reference), -1)
    return flat_ref.mean(0).reshape(x.shape[1:]), flat_ref.std(0).reshape(x.shape[1:])


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
