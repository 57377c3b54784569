"""A user's `torch.utils.data.Dataset`, read once into a memory-mapped file.

Data too large for memory enters the audit as a map-style Dataset of (input, label) pairs (the
`train`, `val` and `test` keys of the dataset contract). Each is read once, item by item, into one
float32 file (unlinked at once, so the operating system frees it with its mapping), and the
audit indexes that mapping like an in-memory array: the rows it touches are paged in, the rest
stay on disk. That file is the one copy of the data the audit makes: the poisoned sets patch rows
on the fly (`patched.PatchedRows`), and training gathers its batches from it.

The same checks as for arrays apply, item by item, without holding more than one item: input
shape, finite values in [0, 1], integer labels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

LABEL_BITS = 31  # class indices below 2**31: more classes than any classifier's head has


def is_dataset(value) -> bool:
    return isinstance(value, torch.utils.data.Dataset)


def read_dataset(dataset, key: str, where: str, problems: list[str], order: np.ndarray | None = None,
                 folder: Path | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(inputs, labels) of a map-style Dataset, the inputs a float32 (N, C, H, W) tensor over a
    memory-mapped file in `folder` (the system's temporary folder by default), written in `order`
    (positions in the dataset; all of them by default); (None, None) with the problems appended
    where the items break the contract."""
    n = _length(dataset, key, where, problems)
    if n is None:
        return None, None
    if n < 2:
        problems.append(f"{where}: the {key} Dataset has {n} items; give more")
        return None, None
    order = np.arange(n) if order is None else order
    first = _item(dataset, int(order[0]), key, where, problems)
    if first is None:
        return None, None
    shape = _stored_shape(first[0])
    if shape is None:
        problems.append(f"{where}: {key}[{int(order[0])}] has an input of shape {tuple(first[0].shape)}; "
                        "each item's input must have shape (C, H, W) or (D,)")
        return None, None
    with tempfile.TemporaryFile(dir=folder, prefix="swiglu-audit-dataset-") as handle:
        # the mapping holds a descriptor of its own on the (unlinked) file: the file is freed when
        # the mapping is, and none is left open for the collector to find, whatever happens below
        stored = np.memmap(handle, dtype=np.float32, mode="w+", shape=(len(order), *shape))
    labels = np.empty(len(order), dtype=np.int64)
    bad_values, low, high, first_bad_shape, first_bad_label = 0, np.inf, -np.inf, None, None
    for pos, index in enumerate(order):
        item = first if pos == 0 else _item(dataset, int(index), key, where, problems)
        if item is None:
            return None, None
        inputs, label = item
        if _stored_shape(inputs) != shape:
            first_bad_shape = first_bad_shape or (int(index), tuple(inputs.shape))
            continue
        row = inputs.reshape(shape)
        finite = np.isfinite(row)
        if not finite.all():
            bad_values += 1
        elif row.size:
            low, high = min(low, float(row.min())), max(high, float(row.max()))
        stored[pos] = row
        if label is None:
            first_bad_label = int(index) if first_bad_label is None else first_bad_label
        else:
            labels[pos] = label
    if first_bad_shape:
        problems.append(f"{where}: {key}[{first_bad_shape[0]}] has an input of shape {first_bad_shape[1]}, "
                        f"others {tuple(first[0].shape)}; every item's input must have one shape")
    if bad_values:
        problems.append(f"{where}: {key} contains NaN or infinite values in {bad_values} item(s); remove "
                        "or impute them before the audit")
    if low < 0 or high > 1:
        problems.append(f"{where}: {key} has values in [{low:.3g}, {high:.3g}]; inputs must lie in [0, 1] "
                        "(attacks perturb in that range): scale them, and normalise inside the model")
    if first_bad_label is not None:
        problems.append(f"{where}: {key}[{first_bad_label}] has a label that is not one integer class index; "
                        f"each item must be (input, label) with an integer label in [0, 2**{LABEL_BITS})"
                        + (", or -1 for an unlabelled item" if key == "live" else ""))
    if first_bad_shape or bad_values or low < 0 or high > 1 or first_bad_label is not None:
        return None, None
    stored.flush()
    return torch.from_numpy(stored), torch.from_numpy(labels)


def _length(dataset, key: str, where: str, problems: list[str]) -> int | None:
    """len(dataset), or None with the problem appended."""
    try:
        return len(dataset)
    except Exception as exc:  # noqa: BLE001  # the user's __len__: report it, whatever it raised
        if not hasattr(dataset, "__len__"):
            problems.append(f"{where}: {key} is a Dataset without a length; give a map-style Dataset "
                            "(with __len__ and __getitem__), not an IterableDataset")
        else:
            problems.append(f"{where}: len() of the {key} Dataset raised {type(exc).__name__}: {exc}; its "
                            "__len__ must return the number of items, an integer >= 0")
        return None


def _item(dataset, index: int, key: str, where: str, problems: list[str]):
    """(input as a float32 array, label as an int or None) of one item, or None with a problem."""
    try:
        item = dataset[index]
    except Exception as exc:  # noqa: BLE001  # the user's code: report it, whatever it raised
        problems.append(f"{where}: {key}[{index}] raised {type(exc).__name__}: {exc}; fix the Dataset")
        return None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        problems.append(f"{where}: {key}[{index}] is {type(item).__name__}, not an (input, label) pair; "
                        "each item must be a pair")
        return None
    try:
        inputs = _as_array(item[0])
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: {key}[{index}]'s input is not numeric ({exc}); give an array or tensor")
        return None
    if np.iscomplexobj(inputs):  # float32 would silently drop the imaginary part
        problems.append(f"{where}: {key}[{index}]'s input has dtype {inputs.dtype}; give real-valued inputs (float32)")
        return None
    return inputs, _label(item[1])


def _as_array(value) -> np.ndarray:
    """One item's input as a float32 array, or a complex one left for the caller to refuse.
    Tensors go through torch's float32 first: numpy has no bfloat16."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value if value.is_complex() else value.float()
    array = np.asarray(value)
    return array if np.iscomplexobj(array) else array.astype(np.float32, copy=False)


def _label(value) -> int | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return _in_range(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return _in_range(int(value))
    return None


def _in_range(label: int) -> int | None:
    """A label the int64 labels hold: a class index below 2**LABEL_BITS, or -1 (an unlabelled live
    item); others are no class index (1e20 and 2**64 would overflow the labels array)."""
    return label if -1 <= label < 2 ** LABEL_BITS else None


def _stored_shape(inputs: np.ndarray) -> tuple[int, ...] | None:
    """How one input is held: (C, H, W) as it is, (D,) feature vectors as (1, 1, D)."""
    if inputs.ndim == 3:
        return tuple(inputs.shape)
    if inputs.ndim == 1:
        return (1, 1, inputs.shape[0])
    return None
