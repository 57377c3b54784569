"""OOD input sets, built offline and seeded: near OOD from the data itself, far OOD from elsewhere.

Every set has the input shape of the audited data and values in [0, 1]. Each carries a level
("near" or "far") and a description that the report prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class OODSet:
    name: str
    level: str  # "near" or "far"
    description: str
    build: Callable[[torch.Tensor, int], torch.Tensor]  # (in-distribution inputs, seed) -> OOD inputs
    modality: str = "any"  # "image", "tabular", or "any": the data it means something for


def rotated(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each input turned by 90 degrees (a vertical flip when the image is not square)."""
    if x.shape[-1] == x.shape[-2]:
        return torch.rot90(x, k=1, dims=(-2, -1)).contiguous()
    return torch.flip(x, dims=(-2,))


def quadrant_shuffled(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The four quadrants of each input moved one place clockwise: local strokes kept, shape broken."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    out = x.clone()
    tl, tr = x[..., :h, :w], x[..., :h, w:2 * w]
    bl, br = x[..., h:2 * h, :w], x[..., h:2 * h, w:2 * w]
    out[..., :h, w:2 * w], out[..., h:2 * h, w:2 * w] = tl, tr
    out[..., h:2 * h, :w], out[..., :h, :w] = br, bl
    return out


def feature_permuted(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each feature's values shuffled across the inputs independently: every marginal kept, every
    relation between features broken (near OOD for (N, D) data)."""
    g = torch.Generator().manual_seed(seed)
    flat = x.reshape(len(x), -1)
    cols = [flat[torch.randperm(len(x), generator=g), j] for j in range(flat.shape[1])]
    return torch.stack(cols, dim=1).reshape(x.shape)


def uniform_noise(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(x.shape, generator=g)


def natural_patches(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Patches of the two photographs that ship with scikit-learn, average-pooled to the input
    size (natural-image statistics at the input resolution); grey for one-channel data."""
    from sklearn.datasets import load_sample_images

    n, (c, h, w) = len(x), tuple(x.shape[1:])
    g = np.random.default_rng(seed)
    photos = [img.astype(np.float32) / 255.0 for img in load_sample_images().images]  # (H, W, 3)
    scale = max(1, min(4, min(p.shape[0] // h for p in photos), min(p.shape[1] // w for p in photos)))
    patches = []
    for i in range(n):
        photo = photos[i % len(photos)]
        top = g.integers(0, photo.shape[0] - scale * h + 1)
        left = g.integers(0, photo.shape[1] - scale * w + 1)
        patch = photo[top:top + scale * h, left:left + scale * w].reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
        patch = patch.transpose(2, 0, 1) if c == 3 else np.repeat(patch.mean(axis=2)[None], c, axis=0)
        patches.append(patch)
    return torch.from_numpy(np.clip(np.stack(patches), 0.0, 1.0).astype(np.float32))


OOD_SETS = (
    OODSet("rotated", "near", "test inputs turned by 90 degrees (vertically flipped when not square); "
           "symmetric classes (a 0, say) stay close to in-distribution, so this set is hard by design",
           rotated, "image"),
    OODSet("quadrant_shuffled", "near", "test inputs with their four quadrants moved one place clockwise: "
           "the same strokes and intensities, in an arrangement no class has", quadrant_shuffled, "image"),
    OODSet("feature_permuted", "near", "test feature vectors with each feature's values shuffled across "
           "inputs: the same marginals, no relation between features", feature_permuted, "tabular"),
    OODSet("uniform_noise", "far", "uniform noise in [0, 1] (the unit box of the scaled inputs), seeded",
           uniform_noise),
    OODSet("natural_patches", "far", "grey patches of the two sample photographs that ship with "
           "scikit-learn, average-pooled to the input size; seeded", natural_patches, "image"),
)
LEVELS = ("near", "far")


def sets_for(modality: str) -> list[OODSet]:
    """The OOD sets that mean something for this kind of data."""
    return [s for s in OOD_SETS if s.modality in (modality, "any")]


def sets_of_level(level: str, modality: str = "image") -> list[OODSet]:
    return [s for s in sets_for(modality) if s.level == level]
