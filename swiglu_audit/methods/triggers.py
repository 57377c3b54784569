"""Backdoor triggers of several kinds: the panel the training-set scan's power is measured on.

The scan's "nothing found" means something only for triggers like those it was shown to find.
One planted trigger (the harness's full-intensity corner patch) said nothing about an attacker's
checkerboard in another corner, so the scan's power is measured on a panel of kinds, each a
function that stamps a batch of inputs. Inputs are (N, C, H, W) in [0, 1]; tabular data are
(N, 1, 1, D), where a "place" is a run of features. `size` is the policy's `trigger_size`.

Kinds (what BENCHMARKS.md's planted-backdoor tables measured on digits):
- corner_patch: a size x size full-intensity patch in the bottom-right corner (the harness's own
  trigger, `poisoning.add_trigger`); tabular: the last `size` features at 1;
- top_left_patch: the same patch in the opposite corner; tabular: the first `size` features;
- edge_patch: a larger patch, (size + 1) squared, on the middle of the left edge; tabular:
  size + 1 features a third of the way along;
- centre_patch: a size x size patch in the centre, over the strokes of most classes (on digits the
  scan does not find it: BENCHMARKS.md, seventh stop); tabular: `size` features in the middle;
- checkerboard: a 3 x 3 pattern of ones and zeros in the top-right corner; tabular: 1, 0, 1 on
  three features two thirds of the way along;
- blend: 20% of a fixed noise image over the whole input (Chen et al. 2017);
- sparse: two single pixels (or features) set to 1, far apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..settings import TRIGGER_KINDS
from .poisoning import add_trigger

BLEND_ALPHA = 0.2
NOISE_SEED = 99  # the blend's noise image: fixed, so every model of an audit sees the same trigger


def _tabular(x: torch.Tensor) -> bool:
    return x.shape[-2] == 1


def _patch(x: torch.Tensor, size: int, where: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    out = x.clone()
    if _tabular(x):
        size = min(size, w)
        start = {"top_left": 0, "edge": w // 3, "centre": (w - size) // 2}[where]
        out[..., start:start + size] = 1.0
        return out
    size = min(size, h, w)
    row, col = {"top_left": (0, 0), "edge": ((h - size) // 2, 0), "centre": ((h - size) // 2, (w - size) // 2)}[where]
    out[..., row:row + size, col:col + size] = 1.0
    return out


def _checkerboard(x: torch.Tensor, size: int) -> torch.Tensor:
    out = x.clone()
    if _tabular(x):
        w = x.shape[-1]
        start = min(2 * w // 3, max(0, w - 3))
        values = torch.tensor([1.0, 0.0, 1.0])[: w - start]
        out[..., start:start + len(values)] = values
        return out
    h, w = x.shape[-2:]
    n = min(3, h, w)
    board = ((torch.arange(n)[:, None] + torch.arange(n)[None, :]) % 2 == 0).to(x.dtype)
    out[..., 0:n, w - n:w] = board
    return out


def _blend(x: torch.Tensor, size: int) -> torch.Tensor:
    noise = torch.from_numpy(np.random.default_rng(NOISE_SEED).random(tuple(x.shape[1:]))).to(x.dtype)
    return (1 - BLEND_ALPHA) * x + BLEND_ALPHA * noise


def _sparse(x: torch.Tensor, size: int) -> torch.Tensor:
    out = x.clone()
    h, w = x.shape[-2:]
    if _tabular(x):
        out[..., w // 4] = 1.0
        out[..., (3 * w) // 4] = 1.0
        return out
    out[..., 0, w // 3] = 1.0
    out[..., (2 * h) // 3, w - 1] = 1.0
    return out


Stamp = Callable[[torch.Tensor, int], torch.Tensor]
STAMPS: dict[str, Stamp] = {
    "corner_patch": add_trigger,
    "top_left_patch": lambda x, size: _patch(x, size, "top_left"),
    "edge_patch": lambda x, size: _patch(x, size + 1, "edge"),
    "centre_patch": lambda x, size: _patch(x, size, "centre"),
    "checkerboard": _checkerboard,
    "blend": _blend,
    "sparse": _sparse,
}
if tuple(STAMPS) != tuple(TRIGGER_KINDS):  # the settings validate names without importing torch
    raise RuntimeError(f"trigger kinds out of step: settings.TRIGGER_KINDS {tuple(TRIGGER_KINDS)} vs {tuple(STAMPS)}")



def stamp(x: torch.Tensor, kind: str, size: int) -> torch.Tensor:
    """`x` with the trigger of `kind` stamped into every input."""
    return STAMPS[kind](x, size)
