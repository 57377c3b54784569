"""Training inputs with a few rows replaced, without copying the rest: a poisoned set's inputs.

A backdoor changes 1 to 10% of the training inputs. Cloning the whole set for each poisoned set
would hold the user's data in memory once more per set; `PatchedRows` holds only the changed rows
and answers indexing like the tensor it stands for, so training, feature extraction and the
trigger scan read it as they read the clean set.
"""

from __future__ import annotations

import torch


class PatchedRows:
    """`base` with the rows at `rows` replaced by `values` (same shape and dtype as those rows)."""

    def __init__(self, base: torch.Tensor, rows: torch.Tensor, values: torch.Tensor):
        self.base = base
        self.values = values.to(base.dtype)
        self._slot = torch.full((len(base),), -1, dtype=torch.long)  # row -> its replacement, or -1
        self._slot[rows.long()] = torch.arange(len(rows))

    def __len__(self) -> int:
        return len(self.base)

    @property
    def shape(self) -> torch.Size:
        return self.base.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    def __getitem__(self, key) -> torch.Tensor:
        """Any index a tensor takes along its first dimension (int, slice, index or boolean tensor)."""
        if isinstance(key, torch.Tensor):
            key = key.cpu()
        positions = torch.arange(len(self.base))[key]
        single = positions.ndim == 0
        positions = positions.reshape(-1)
        out = self.base[positions]  # indexing with a tensor makes a new tensor: safe to write
        slot = self._slot[positions]
        hit = slot >= 0
        if hit.any():
            out[hit] = self.values[slot[hit]]
        return out[0] if single else out
