"""Shifted copies of training images, looked up on their central window.

A random crop of a padded image (`RandomCrop(32, padding=4)`, the commonest augmentation of
CIFAR-sized data) applied before the split puts copies of training images, shifted by up to 4
pixels, into the test split. The leak rule's shifted copies reach 1 pixel
(`methods/integrity.py`), and a 2-pixel shift of a 3x32x32 image was found 0 times in 375
(`bench/leakage.json`). A whole shifted image differs from its source in the strips the shift
brings in (padding), so the two are compared on the window both hold: the query's central window,
moved by every offset of up to S pixels, against each training image's central window (S pixels in
from every side), both standardised as the leak rule standardises an image.

S is an eighth of the shorter side, at most 4 pixels, and at least 1 from 8 pixels a side: the
1-pixel rule fills the strip a shift brings in by repeating the edge, so a copy shifted with zeros
(a crop's padding) of a digit whose strokes reach the edge was missed (on the digits, 17 to 27% of
zero-padded 1-pixel shifts were found; bench/bench_leakage.py). Images under 8 pixels a side are
left to the 1-pixel rule. The search is (2S + 1)^2 nearest-neighbour lookups of every query
against every training window; above its budget (`SEARCH_BUDGET` floating-point operations by
default, the poisoning section's `shift_search_tflop`) it is not run, and the finding says so and
is at best an inconclusive WARN (`ShiftSearch`, checks.data_integrity)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .image_rows import SCALE_SAMPLE, distinct_neighbour_unit, standardised_images

MIN_SIDE = 8
MAX_SHIFT = 4
# about 18 s on a 2-core CPU (sklearn's brute-force search ran at about 110 GFLOP/s with the matmul
# at 390, bench/window-search-time.json): a test split
# of 2,000 CIFAR-sized images against 10,000 training images fits; CIFAR-10 itself (10,000 against
# 50,000) is 35 TFLOP, 17.5 times over it. The budget holds for each lookup: an audit makes up to
# three (test and validation against train, test against validation)
SEARCH_BUDGET = 2e12


def largest_shift(shape: tuple[int, ...]) -> int:
    """S for images of `shape` (N, C, H, W): 0 where they are not looked up here."""
    if len(shape) != 4 or min(shape[-2:]) < MIN_SIDE:
        return 0
    return max(1, min(MAX_SHIFT, min(shape[-2:]) // 8))


@dataclass(frozen=True)
class ShiftSearch:
    """What one query set's lookup covered: shifts of up to `largest_shift` pixels where
    `searched`; else `why` it was not run. `tflop`: what the lookup costs (or would have)."""
    largest_shift: int
    searched: bool
    why: str = ""
    tflop: float = 0.0

    def to_dict(self) -> dict:
        # rounded up: a budget set to the figure shown must cover the search
        return {"largest_shift": self.largest_shift, "searched": self.searched, "why": self.why,
                "tflop": math.ceil(self.tflop * 1000) / 1000}


def plan_search(a: torch.Tensor, n_queries: int, budget: float = SEARCH_BUDGET) -> ShiftSearch | None:
    """What looking up `n_queries` images against the set `a` covers within `budget` floating-point
    operations, from the shapes alone (no index is built for a search over its budget, though a
    smaller split's search reads the training split's window unit, which builds its windows); None:
    images under 8 pixels a side."""
    shift = largest_shift(tuple(a.shape))
    if not shift:
        return None
    offsets, dims = (2 * shift + 1) ** 2, _window_rows(a[:1], shift).shape[1]
    cost = float(offsets) * n_queries * len(a) * dims * 2
    if cost > budget:
        return ShiftSearch(shift, False, f"{n_queries} images against {len(a)} at {offsets} offsets is "
                           f"{cost / 1e12:.1f} TFLOP, over the search's budget of {budget / 1e12:g} "
                           "(poisoning.shift_search_tflop)", cost / 1e12)
    return ShiftSearch(shift, True, tflop=cost / 1e12)


def _window_rows(x: torch.Tensor, shift: int, dy: int = 0, dx: int = 0) -> np.ndarray:
    _, _, h, w = x.shape
    return standardised_images(x[:, :, shift + dy:h - shift + dy, shift + dx:w - shift + dx])


class ShiftedWindowIndex:
    """The central windows of a set `a` of images (at least 8 pixels a side), with a fitted
    nearest-neighbour search and a unit distance: `unit` where given (a validation split reads the
    training split's), else their own, by the leak rule's measure (the median distance of a sample
    of windows to their nearest distinct window)."""

    def __init__(self, a: torch.Tensor, seed: int = 0, unit: float | None = None):
        from sklearn.neighbors import NearestNeighbors

        self.shift = largest_shift(tuple(a.shape))
        if not self.shift:
            raise ValueError(f"images of {tuple(a.shape[1:])} are under {MIN_SIDE} pixels a side: "
                             "the 1-pixel rule alone covers them")
        rows = _window_rows(a, self.shift)
        self.size, self.dims = rows.shape
        self.search = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(rows)
        if unit is None:
            sample = np.random.default_rng(seed).choice(self.size, size=min(SCALE_SAMPLE, self.size), replace=False)
            unit = distinct_neighbour_unit(self.search, rows[sample])
        self.unit = unit or 1e-12

    def nearest(self, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each image of `b`'s least distance (in units) to a training window, over every offset
        of its own central window, and that training image."""
        best = np.full(len(b), np.inf)
        nearest = np.zeros(len(b), dtype=int)
        for dy in range(-self.shift, self.shift + 1):
            for dx in range(-self.shift, self.shift + 1):
                d, i = self.search.kneighbors(_window_rows(b, self.shift, dy, dx))
                better = d[:, 0] < best
                best[better], nearest[better] = d[better, 0], i[better, 0]
        return best / self.unit, nearest
