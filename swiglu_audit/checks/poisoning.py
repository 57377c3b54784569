"""Availability poisoning: uniformly random label flipping of a share of the training set."""

from __future__ import annotations

import torch

from ..risk import CheckInfo

LABEL_FLIP = CheckInfo(
    suite="poisoning", check="label_flip_degradation", title="Label-flip poisoning: clean accuracy lost",
    metric="clean accuracy change (poisoned - clean)", rmf=("MEASURE 2.7", "MEASURE 2.1"),
    characteristic="secure_resilient", attack_class="poisoning/availability", impact="moderate",
    explanation="The model is retrained after an attacker flipped the labels of a share of the "
                "training set to other classes at random; the finding is the change in clean "
                "test accuracy against the model trained on clean labels, same seed.",
    mitigation="Data sanitisation (label-error detection, provenance checks), robust losses, and "
               "monitoring of label distributions in incoming training data.",
)

LABEL_FLIP_COMPARISON = CheckInfo(
    suite="poisoning", check="label_flip_degradation_vs_baseline",
    title="Label-flip degradation, SwiGLU candidate vs baseline",
    metric="difference of accuracy changes (candidate - baseline)", rmf=("MEASURE 2.7", "MEASURE 2.1"),
    characteristic="secure_resilient", attack_class="poisoning/availability", impact="moderate",
    explanation="Whether the SwiGLU candidate loses more clean accuracy to label flipping than a "
                "baseline trained on the same poisoned data.",
    mitigation="If the candidate degrades more, strengthen data sanitisation before adopting it.",
)


def flip_labels(y: torch.Tensor, rate: float, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip round(rate * N) labels, chosen at random, each to a different random class.

    Returns (poisoned labels, boolean mask of the flipped samples)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"flip rate must be in [0, 1), got {rate}")
    g = torch.Generator().manual_seed(seed)
    n_flip = round(rate * len(y))
    idx = torch.randperm(len(y), generator=g)[:n_flip]
    offset = torch.randint(1, n_classes, (n_flip,), generator=g)  # never the true class
    poisoned = y.clone()
    poisoned[idx] = (y[idx] + offset) % n_classes
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[idx] = True
    return poisoned, mask
