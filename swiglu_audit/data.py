"""The dataset contract, the built-in digits data, fixed splits and content hashes.

Contract for a user's dataset factory (`dataset = "package.module:callable"`): called with no
arguments, it returns a mapping with `x_train`, `y_train`, `x_test`, `y_test` and optionally
`x_val`, `y_val`, `n_classes` and `name`. Images are arrays or tensors of shape (N, C, H, W) with
values in [0, 1] (normalisation belongs inside the model); labels are integers in [0, n_classes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import DataContractError
from .imports import load_callable

SPLIT_SEED = 0  # the splits are fixed: every model of every run sees the same examples


@dataclass(frozen=True, eq=False)
class AuditData:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    hashes: dict[str, str] = field(default_factory=dict)  # split -> sha256 of images and labels
    # Position of each training sample in the x_train the user's factory returned (the audit
    # carves a validation split out of it when none is given); None when the split is as given.
    train_source_index: np.ndarray | None = None

    def source_train_indices(self, indices) -> list[int]:
        """Training-split positions -> positions in the user's own x_train, for reports."""
        if self.train_source_index is None:
            return [int(i) for i in indices]
        return [int(self.train_source_index[i]) for i in indices]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def fingerprint(self) -> str:
        """One hash over all splits: part of every checkpoint's cache key."""
        joined = "|".join(f"{k}={v}" for k, v in sorted(self.hashes.items()))
        return hashlib.sha256(joined.encode()).hexdigest()

    def summary(self) -> dict:
        return {
            "name": self.name,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "sizes": {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)},
            "sha256": dict(self.hashes),
        }


def split_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 over shape, dtype and bytes of images and labels: stable across runs and platforms."""
    h = hashlib.sha256()
    for t in (x, y):
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def make_audit_data(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    n_classes: int, train_source_index: np.ndarray | None = None) -> AuditData:
    hashes = {k: split_hash(*v) for k, v in splits.items()}
    return AuditData(
        name=name,
        x_train=splits["train"][0], y_train=splits["train"][1],
        x_val=splits["val"][0], y_val=splits["val"][1],
        x_test=splits["test"][0], y_test=splits["test"][1],
        n_classes=n_classes, hashes=hashes, train_source_index=train_source_index,
    )


def load_digits_data() -> AuditData:
    """scikit-learn's digits (1797 8x8 images, 10 classes), split 60/20/20, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, rest_idx = train_test_split(idx, test_size=0.4, stratify=y, random_state=SPLIT_SEED)
    val_idx, test_idx = train_test_split(rest_idx, test_size=0.5, stratify=y[rest_idx],
                                         random_state=SPLIT_SEED)
    splits = {k: (torch.from_numpy(x[i]), torch.from_numpy(y[i]))
              for k, i in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    return make_audit_data("digits", splits, n_classes=10)


def load_user_data(import_path: str) -> AuditData:
    """Call the user's dataset factory and check its output against the contract."""
    where = f"dataset factory '{import_path}'"
    factory = load_callable(import_path, "[tool.swiglu_audit] dataset", DataContractError)
    try:
        raw = factory()
    except Exception as exc:
        raise DataContractError(f"{where} raised {type(exc).__name__}: {exc}; fix the factory "
                                "so that it returns the mapping described in the README") from exc
    if not hasattr(raw, "__getitem__") or not all(k in raw for k in ("x_train", "y_train", "x_test", "y_test")):
        raise DataContractError(f"{where} must return a mapping with x_train, y_train, x_test, "
                                "y_test (and optionally x_val, y_val, n_classes, name)")
    x_train, y_train = _as_images(raw["x_train"], "x_train", where), _as_labels(raw["y_train"], "y_train", where)
    x_test, y_test = _as_images(raw["x_test"], "x_test", where), _as_labels(raw["y_test"], "y_test", where)
    pairs = {"train": (x_train, y_train), "test": (x_test, y_test)}
    if "x_val" in raw and "y_val" in raw:
        pairs["val"] = (_as_images(raw["x_val"], "x_val", where), _as_labels(raw["y_val"], "y_val", where))
    for split, (x, y) in pairs.items():
        if len(x) != len(y):
            raise DataContractError(f"{where}: x_{split} has {len(x)} samples but y_{split} has "
                                    f"{len(y)}; images and labels must pair one to one")
        if len(x) < 2:
            raise DataContractError(f"{where}: the {split} split has {len(x)} samples; give more")
    source_index = None
    if "val" not in pairs:  # carve a fixed, stratified validation split out of train
        x_train, y_train, x_val, y_val, source_index = _carve_validation(x_train, y_train)
        pairs = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
    shapes = {tuple(x.shape[1:]) for x, _ in pairs.values()}
    if len(shapes) != 1:
        raise DataContractError(f"{where}: splits have different image shapes {sorted(shapes)}")
    n_classes = int(raw.get("n_classes", int(max(int(y.max()) for _, y in pairs.values())) + 1))
    for split, (_, y) in pairs.items():
        if int(y.min()) < 0 or int(y.max()) >= n_classes:
            raise DataContractError(f"{where}: y_{split} has labels outside [0, {n_classes}); "
                                    "labels must be class indices")
    return make_audit_data(str(raw.get("name", import_path)), pairs, n_classes, source_index)


def _as_images(value, key: str, where: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if t.ndim == 2:  # (N, D) feature vectors are treated as 1 x 1 x D images
        t = t[:, None, None, :]
    if t.ndim != 4:
        raise DataContractError(f"{where}: {key} must have shape (N, C, H, W) or (N, D); "
                                f"got {tuple(t.shape)}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise DataContractError(f"{where}: {key} contains NaN or infinite values")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise DataContractError(f"{where}: {key} has values in [{float(t.min()):.3g}, "
                                f"{float(t.max()):.3g}]; inputs must lie in [0, 1] (attacks "
                                "perturb in that range): scale them, and normalise inside the model")
    return t.contiguous()


def _as_labels(value, key: str, where: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if t.ndim != 1:
        raise DataContractError(f"{where}: {key} must be a 1-D array of class indices")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise DataContractError(f"{where}: {key} holds non-integer labels")
    return t.long().contiguous()


def _carve_validation(x: torch.Tensor, y: torch.Tensor):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y.numpy())
    stratify = y.numpy() if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(idx, test_size=0.2, stratify=stratify, random_state=SPLIT_SEED)
    return x[tr], y[tr], x[va], y[va], tr
