"""Simulated data poisoning: label flipping (random and targeted), BadNets-style backdoors.

Pure functions on tensors. Each attack returns the poisoned training set and the boolean mask of
the samples it touched (the ground truth the detectors in `poison_detectors` are scored against).
`POISONING_ATTACKS` is the registry the poisoning measurements build their sets from; a new
attack is one entry (its findings are the suite's: a curve, a success rate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..training.patched import PatchedRows


@dataclass(frozen=True)
class PoisonedSet:
    x: torch.Tensor | PatchedRows
    y: torch.Tensor
    mask: torch.Tensor  # True where the attack touched the sample


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
    return poisoned, _mask(len(y), idx)


def targeted_flip(y: torch.Tensor, source: int, target: int, rate: float, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel round(rate * n_source) randomly chosen source-class samples as `target`.

    The rate is a share of the source class, not of the whole set: that is the attacker's lever."""
    if source == target:
        raise ValueError("targeted flipping needs two different classes")
    candidates = torch.nonzero(y == source).flatten()
    g = torch.Generator().manual_seed(seed)
    idx = candidates[torch.randperm(len(candidates), generator=g)[:round(rate * len(candidates))]]
    poisoned = y.clone()
    poisoned[idx] = target
    return poisoned, _mask(len(y), idx)


def add_trigger(x: torch.Tensor, size: int) -> torch.Tensor:
    """Stamp a size x size patch at full intensity into the bottom-right corner of every image;
    for (N, 1, 1, D) feature vectors, set the last `size` features to their largest value, 1
    (a feature-space trigger: a few features at a value the data rarely takes)."""
    out = x.clone()
    if x.shape[-2] == 1:  # tabular
        if size < 1 or size > x.shape[-1]:
            raise ValueError(f"trigger size {size} does not fit {x.shape[-1]} features")
        out[..., -size:] = 1.0
        return out
    if size < 1 or size > min(x.shape[-2:]):
        raise ValueError(f"trigger size {size} does not fit images of shape {tuple(x.shape[1:])}")
    out[..., -size:, -size:] = 1.0
    return out


def backdoor(x: torch.Tensor, y: torch.Tensor, target: int, rate: float, size: int, seed: int,
             clean_label: bool = False, stamp: Callable[[torch.Tensor, int], torch.Tensor] = add_trigger
             ) -> PoisonedSet:
    """BadNets: trigger round(rate * N) samples of other classes and relabel them `target`.

    With `clean_label`, the trigger goes on target-class samples only and no label changes: the
    poison passes a label audit, at the price of a weaker attack. `stamp` draws the trigger (the
    harness's corner patch unless another kind of `methods.triggers` is given)."""
    pool = torch.nonzero((y == target) if clean_label else (y != target)).flatten()
    g = torch.Generator().manual_seed(seed)
    n = min(round(rate * len(y)), len(pool))
    idx = pool[torch.randperm(len(pool), generator=g)[:n]]
    y_p = y.clone()
    y_p[idx] = target
    # only the triggered rows are held anew: the set may be a user's data too large to copy
    return PoisonedSet(PatchedRows(x, idx, stamp(x[idx], size)), y_p, _mask(len(y), idx))


@dataclass(frozen=True)
class PoisonParams:
    """What the registered attacks read besides the data and the rate."""

    n_classes: int
    targeted_pair: tuple[int, int]  # (source, target) of targeted flipping
    backdoor_target: int
    trigger_size: int
    seed: int


PoisoningAttack = Callable[[torch.Tensor, torch.Tensor, float, PoisonParams], PoisonedSet]
POISONING_ATTACKS: dict[str, PoisoningAttack] = {
    "flip": lambda x, y, rate, p: PoisonedSet(x, *flip_labels(y, rate, p.n_classes, p.seed)),
    "targeted": lambda x, y, rate, p: PoisonedSet(x, *targeted_flip(y, *p.targeted_pair, rate, p.seed)),
    "backdoor": lambda x, y, rate, p: backdoor(x, y, p.backdoor_target, rate, p.trigger_size, p.seed),
    "clean_label": lambda x, y, rate, p: backdoor(x, y, p.backdoor_target, rate, p.trigger_size, p.seed,
                                                  clean_label=True),
}


def _mask(n: int, idx: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return mask
