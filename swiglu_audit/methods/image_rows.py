"""Images and rows as the leak rule compares them (`methods/integrity.py`,
`methods/shifted_copies.py`): an image standardised so that brightness, contrast and re-encoding
noise drop out, and the unit distance a set's distances are read in."""

from __future__ import annotations

import numpy as np
import torch

_MAX_SIDE = 16  # pixels per side after pooling
SCALE_SAMPLE = 2000  # training rows whose nearest-neighbour distance sets the unit
# The unit is each sampled row's distance to its nearest *distinct* row: a set where over half the
# rows have an exact copy has a median nearest-neighbour distance of 0, and a unit of 0 counted
# only exact copies (a test row that copied a training row and took faint noise was missed).
# Copies are rows within _SAME of each other (times the rows' typical norm: the search's float
# rounding leaves about 1e-8 between copies); a row with more than _UNIT_NEIGHBOURS - 1 copies is
# left out; where no row has a distinct neighbour the unit is 1.0.
_SAME = 1e-6
_UNIT_NEIGHBOURS = 16


def distinct_neighbour_unit(search, rows: np.ndarray) -> float:
    """The median distance of `rows` (rows of the set `search` was fitted on) to their nearest
    row that is not a copy of them (`_SAME`); 1.0 where none has one."""
    k = min(_UNIT_NEIGHBOURS, search.n_samples_fit_)
    if k < 2:
        return 1.0
    distances, _ = search.kneighbors(rows, n_neighbors=k)
    same = _SAME * max(1.0, float(np.median(np.linalg.norm(rows, axis=1))))
    distinct = distances > same
    has = distinct.any(axis=1)
    if not has.any():
        return 1.0
    first = distances[has, distinct[has].argmax(axis=1)]  # each row's nearest distinct distance
    return float(np.median(first))


def standardised_images(x: torch.Tensor, dy: int = 0, dx: int = 0) -> np.ndarray:
    """(N, C, H, W) -> rows: shifted by (dy, dx) pixels (edges repeated), pooled to at most
    16x16, blurred 3x3, centred and scaled to unit norm per image."""
    import torch.nn.functional as F

    x = x.detach().cpu().float()
    _, _, h, w = x.shape
    if dy or dx:
        pad = max(abs(dy), abs(dx))
        x = F.pad(x, (pad,) * 4, mode="replicate")[:, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w]
    factor = max(1, -(-max(h, w) // _MAX_SIDE))
    if factor > 1:
        x = F.avg_pool2d(x, factor, ceil_mode=True)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    rows = x.reshape(len(x), -1)
    rows = rows - rows.mean(1, keepdim=True)
    return (rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy()
