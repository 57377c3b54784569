"""The dataset contract, the built-in digits data, fixed splits and content hashes.

Contract for a user's dataset factory (`dataset = "package.module:callable"`): called with no
arguments, it returns a mapping with `x_train`, `y_train`, `x_test`, `y_test` and optionally
`x_val`, `y_val`, `n_classes` and `name`. Images are arrays or tensors of shape (N, C, H, W) with
values in [0, 1] (normalisation belongs inside the model); labels are integers in [0, n_classes).
A split too large for memory is given instead as a map-style `torch.utils.data.Dataset` of
(input, label) pairs under `train`, `val` or `test` (dataset_file.py reads it once into a
memory-mapped file).

Live data (the drift suite): production inputs the deployed model now sees, `x_live` with
optional `y_live` (labels that arrived later), in the factory's mapping, or from `live = ...`
(an .npz file holding x_live and optionally y_live, an .npy file of inputs, or a callable
returning such a mapping). Live data is kept out of the data's fingerprint: new live data each
night must not retrain a cached model.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataContractError
from ..util.imports import load_callable
from .dataset_file import is_dataset, read_dataset
from .evaluation_rows import stratified_rows
from .live_file import read_live_file

SPLIT_SEED = 0  # the splits are fixed: every model of every run sees the same examples
DIGITS_SPLIT_FILE = "digits_split.json"  # the built-in splits made at SPLIT_SEED (`digits_split`)
VAL_SHARE = 0.2  # of x_train, carved out as the validation split when none is given
# Every model is probed at start-up with a batch of PROBE_ROWS validation inputs (zoo.py's
# check_model_contract), and the checks read accuracies off the validation and test splits: a
# split needs at least that batch, and below it one input moves an accuracy by more than 12 points
PROBE_ROWS = 8
LABEL_LIMIT = 2**31  # class indices a label tensor holds without wrapping, as dataset_file.py reads them
MIN_SPLIT_ROWS = PROBE_ROWS


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
    # "image" for (N, C, H, W) inputs, "tabular" for (N, D) feature vectors (held as (N, 1, 1, D)):
    # the checks that only mean something for one of them read this (image corruptions, say)
    modality: str = "image"
    x_live: torch.Tensor | None = None  # production inputs, same shape and range as x_test
    y_live: torch.Tensor | None = None  # their labels, when they arrived
    live_hash: str | None = None  # sha256 of the live data: reported, never in the fingerprint
    # The groups a user names (the fairness suite): one label per test input, from `groups_test`
    # in the factory's mapping or from a feature's values (`fairness.group_feature`); never in the
    # fingerprint: naming groups must not retrain a cached model
    groups_test: np.ndarray | None = None
    groups_source: str | None = None  # where the groups came from, in words
    # (split, n) -> positions; not copied by dataclasses.replace, which may change the splits
    _rows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def evaluation_rows(self, split: str, n: int) -> torch.Tensor:
        """Positions of the rows of the test or validation split that a suite measuring `n` of them
        measures: class-stratified and fixed (`evaluation_rows.stratified_rows`), not the first n,
        which on a split stored class by class hold one or two classes."""
        if (split, n) not in self._rows:
            labels = {"test": self.y_test, "val": self.y_val}[split]
            self._rows[split, n] = torch.from_numpy(stratified_rows(labels.numpy(), n))
        return self._rows[split, n]

    def evaluation_subset(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of `evaluation_rows`; the split itself when it has at most n rows."""
        x, y = {"test": (self.x_test, self.y_test), "val": (self.x_val, self.y_val)}[split]
        if n >= len(y):
            return x, y
        rows = self.evaluation_rows(split, n)
        return x[rows], y[rows]

    def group_codes(self) -> tuple[np.ndarray, list[str]]:
        """(a group index per test input, the group names in index order)."""
        if self.groups_test is None:
            raise ValueError("no groups were given")
        names, codes = np.unique(self.groups_test, return_inverse=True)
        return codes.astype(np.int64), [str(n) for n in names]

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
            "modality": self.modality,
            "sizes": {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)},
            "sha256": dict(self.hashes),
            **({"live": {"size": len(self.x_live), "labelled": self.y_live is not None, "sha256": self.live_hash}}
               if self.x_live is not None else {}),
        }


def split_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 over shape, dtype and bytes of images and labels: stable across runs and platforms.
    The bytes are read in place (a memory-mapped split is paged through, not copied)."""
    h = hashlib.sha256()
    for t in (x, y):
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        rows = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, -1)
        for start in range(0, len(rows), HASH_ROWS):
            h.update(memoryview(rows[start:start + HASH_ROWS]))
    return h.hexdigest()


HASH_ROWS = 4096  # rows hashed per update: bounds what a memory-mapped split pages in at once
CHECK_ROWS = 4096  # rows per block of the value checks of in-memory splits


def make_audit_data(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    n_classes: int, train_source_index: np.ndarray | None = None,
                    modality: str = "image") -> AuditData:
    hashes = {k: split_hash(*v) for k, v in splits.items()}
    return AuditData(
        name=name,
        x_train=splits["train"][0], y_train=splits["train"][1],
        x_val=splits["val"][0], y_val=splits["val"][1],
        x_test=splits["test"][0], y_test=splits["test"][1],
        n_classes=n_classes, hashes=hashes, train_source_index=train_source_index, modality=modality,
    )


def load_digits_data() -> AuditData:
    """scikit-learn's digits (1797 8x8 images, 10 classes), split 60/20/20, stratified."""
    images, target = digits_arrays()
    x = (images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    y = target.astype(np.int64)
    positions = digits_split()
    splits = {k: (torch.from_numpy(x[positions[k]]), torch.from_numpy(y[positions[k]])) for k in ("train", "val", "test")}
    return make_audit_data("digits", splits, n_classes=10)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8), targets (N,)) of scikit-learn's digits, as `load_digits` returns them. Read
    from the file scikit-learn ships, found without importing scikit-learn: importing it costs over a
    second of every audit, and a warm audit needs nothing else of it. Where the file is not where
    this version keeps it, `load_digits` reads it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # a top-level name: found, not imported
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    with gzip.open(csv, mode="rt", encoding="utf-8") as rows:
        table = np.loadtxt(rows, delimiter=",")  # as load_digits reads it: 64 pixels, then the class
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int, copy=False)


def digits_split() -> dict[str, np.ndarray]:
    """The built-in splits' positions in the digits: train_test_split's stratified 60/20/20 at
    SPLIT_SEED, shipped beside this module (tests/test_datasets.py makes them anew and compares), so
    that neither the split nor a warm audit's start waits on importing scikit-learn."""
    doc = json.loads((Path(__file__).parent / DIGITS_SPLIT_FILE).read_text())
    return {k: np.asarray(doc[k], dtype=np.int64) for k in ("train", "val", "test")}


def load_audit_data(dataset: str | None, cache_dir: str | Path, live: str | None = None,
                    group_feature: int = -1) -> AuditData:
    """The audit's data (`_load_audit_data`), with the live data of `live` attached when given,
    and groups named by `group_feature` when it is a feature index."""
    data = _load_audit_data(dataset, cache_dir)
    data = attach_live(data, live) if live else data
    return groups_from_feature(data, group_feature) if group_feature >= 0 else data


def attach_live(data: AuditData, live: str) -> AuditData:
    """`data` with the live inputs (and labels) of `live`: an .npz or .npy path, or a callable."""
    where = f"live data '{live}'"
    path = Path(live).expanduser()
    if path.suffix in (".npz", ".npy"):
        if not path.is_file():
            raise DataContractError(f"{where}: no such file; give the path of an .npz (x_live, optional y_live) "
                                    "or .npy file, or \"package.module:callable\"")
        raw = read_live_file(path, where)
    else:
        factory = load_callable(live, "[tool.swiglu_audit] live", DataContractError)
        try:
            raw = factory()
        except Exception as exc:
            raise DataContractError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(raw, "__contains__") or ("x_live" not in raw and _dataset_at(raw, "live") is None):
        raise DataContractError(f"{where} must give a mapping with x_live (and optionally y_live), or a "
                                "Dataset of (input, label) pairs under live (label -1: unlabelled)")
    return _with_live(data, raw, where)


def _with_live(data: AuditData, raw, where: str, folder: Path | None = None) -> AuditData:
    """`data` with the checked live split of `raw` (x_live and optionally y_live, or a Dataset of
    (input, label) pairs under `live`, label -1 for an unlabelled item); every problem at once."""
    problems: list[str] = []
    out_of_range: dict[str, tuple[float, float]] = {}
    if _dataset_at(raw, "live") is not None:
        x, y = read_dataset(raw["live"], "live", where, problems, None, folder)
        if y is not None and bool((y < 0).any()):
            if not bool((y < 0).all()):
                problems.append(f"{where}: the live Dataset labels some items and gives -1 for others; label "
                                "all of them, or give -1 for all (unlabelled)")
            y = None
        if x is not None and x.numel():  # inputs that hold no values are named below
            low, high = float(x.min()), float(x.max())
            if low < 0 or high > 1:
                out_of_range["x_live"] = (low, high)
    else:
        x = _as_images(raw["x_live"], "x_live", where, problems, out_of_range)
        y = _as_labels(raw["y_live"], "y_live", where, problems) if "y_live" in raw else None
    if out_of_range:
        low, high = out_of_range["x_live"]
        problems.append(f"{where}: x_live has values in [{low:.3g}, {high:.3g}]; inputs must lie in [0, 1] as "
                        "the training inputs do")
    if x is not None and 0 in x.shape[1:]:  # one mistake, one message: not a shape mismatch as well
        problems.append(f"{where}: x_live inputs of shape {tuple(x.shape[1:])} hold no values; give at least one "
                        "feature per input")
    elif x is not None and tuple(x.shape[1:]) != data.input_shape:
        problems.append(f"{where}: x_live has inputs of shape {tuple(x.shape[1:])}, the training data "
                        f"{data.input_shape}; live inputs must have the training inputs' shape")
    if x is not None and len(x) < 20:
        problems.append(f"{where}: x_live has {len(x)} inputs; give at least 20 (a two-sample test needs them)")
    if x is not None and y is not None and len(x) != len(y):
        problems.append(f"{where}: x_live has {len(x)} inputs but y_live {len(y)} labels")
    if y is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= data.n_classes):
        problems.append(f"{where}: y_live has labels outside [0, {data.n_classes})")
    if problems:
        raise DataContractError(*problems)
    assert x is not None
    labels = y if y is not None else torch.full((len(x),), -1)  # unlabelled: -1 stands in for the hash
    return dataclasses.replace(data, x_live=x, y_live=y, live_hash=split_hash(x, labels))


def _load_audit_data(dataset: str | None, cache_dir: str | Path) -> AuditData:
    """The audit's data: the user's factory's (`dataset`), or the built-in digits. Splits given as
    Datasets are mapped into files under the cache folder's `datasets/` (or the temporary folder
    where that cannot be made).

    Loaded once per process and factory: the start-up checks, the plan and the session of one
    process share it, so a large Dataset is read once per process, not three times. The factory
    object is part of the key, so a reloaded module loads again."""
    if not dataset:
        return load_digits_data()
    factory = load_callable(dataset, "[tool.swiglu_audit] dataset", DataContractError)
    key = (dataset, str(cache_dir))
    if key in _LOADED and _LOADED[key][0] is factory:
        return _LOADED[key][1]
    folder: Path | None = Path(cache_dir) / "datasets"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = None
    data = load_user_data(dataset, folder)
    _LOADED[key] = (factory, data)
    return data


_LOADED: dict[tuple[str, str], tuple[object, AuditData]] = {}  # (dataset, cache folder) -> (factory, data)


def load_user_data(import_path: str, folder: Path | None = None) -> AuditData:
    """Call the user's dataset factory and check its output against the contract.

    Every problem found is reported at once (one DataContractError whose `problems` lists them),
    so that a user fixes their dataset in one round instead of one error per run. Splits given as
    Datasets are read into memory-mapped files in `folder` (the system's temporary folder by default)."""
    where = f"dataset factory '{import_path}'"
    factory = load_callable(import_path, "[tool.swiglu_audit] dataset", DataContractError)
    try:
        raw = factory()
    except Exception as exc:
        raise DataContractError(f"{where} raised {type(exc).__name__}: {exc}; fix the factory "
                                "so that it returns the mapping described in the README") from exc
    if not hasattr(raw, "__getitem__") or not hasattr(raw, "__contains__"):
        raise DataContractError(f"{where} returned {type(raw).__name__}; it must return a mapping "
                                "with x_train, y_train, x_test, y_test (and optionally x_val, y_val, "
                                "n_classes, name)")
    missing = [k for s in ("train", "test") if not _has_split(raw, s)
               for k in (f"x_{s}", f"y_{s}") if k not in raw]
    if missing:
        raise DataContractError(f"{where}: the returned mapping lacks {', '.join(missing)}; it must "
                                "hold x_train, y_train, x_test, y_test (and optionally x_val, y_val, "
                                "n_classes, name), or Datasets of (input, label) pairs under train, test "
                                "(and val)")
    problems: list[str] = [f"{where}: '{s}' is {type(raw[s]).__name__}; give a torch.utils.data.Dataset of "
                           f"(input, label) pairs there, or arrays as x_{s} and y_{s}"
                           for s in ("train", "val", "test") if s in raw and not is_dataset(raw[s])]
    modality = _modality(raw, where, problems)
    splits = ["train", "test"] + (["val"] if _has_split(raw, "val") else [])
    out_of_range: dict[str, tuple[float, float]] = {}
    carved = None
    if "val" not in splits and _dataset_at(raw, "train") is not None:  # carve val without reading the set twice
        carved = _validation_order(raw["train"])
    pairs = {}
    for s in splits:
        if _dataset_at(raw, s) is not None:
            order = np.concatenate(carved) if s == "train" and carved is not None else None
            pairs[s] = read_dataset(raw[s], s, where, problems, order, folder)
        else:
            pairs[s] = (_as_images(raw[f"x_{s}"], f"x_{s}", where, problems, out_of_range),
                        _as_labels(raw[f"y_{s}"], f"y_{s}", where, problems))
    if out_of_range:  # one mistake (unscaled inputs), one message, whatever the number of splits
        low, high = min(v[0] for v in out_of_range.values()), max(v[1] for v in out_of_range.values())
        problems.append(f"{where}: {', '.join(out_of_range)} {'has' if len(out_of_range) == 1 else 'have'} "
                        f"values in [{low:.3g}, {high:.3g}]; inputs must lie in [0, 1] (attacks "
                        "perturb in that range): scale them, and normalise inside the model")
    for split, (x, y) in pairs.items():
        if x is not None and y is not None and len(x) != len(y):
            problems.append(f"{where}: x_{split} has {len(x)} samples but y_{split} has "
                            f"{len(y)}; images and labels must pair one to one")
    problems += _size_problems(pairs, "val" not in splits, where)
    shapes = {tuple(x.shape[1:]) for x, _ in pairs.values() if x is not None}
    if len(shapes) > 1:
        problems.append(f"{where}: splits have different input shapes {sorted(shapes)}; every "
                        "split must hold inputs of one shape")
    problems += [f"{where}: inputs of shape {shape} hold no values; give at least one feature per input"
                 for shape in sorted(shapes) if 0 in shape]
    labels = [y for _, y in pairs.values() if y is not None and len(y)]
    n_classes = _n_classes(raw, labels, where, problems)
    for split, (_, y) in pairs.items():
        if y is not None and len(y) and n_classes and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            problems.append(f"{where}: y_{split} has labels in [{int(y.min())}, {int(y.max())}], "
                            f"outside [0, {n_classes}); labels must be class indices below n_classes")
    train_labels = pairs["train"][1]
    if train_labels is not None and len(train_labels) and n_classes:
        problems += _class_problems(train_labels, n_classes, "n_classes" in raw, where)
    if problems:
        raise DataContractError(*problems)
    checked = {s: (x, y) for s, (x, y) in pairs.items() if x is not None and y is not None}
    source_index = None
    if carved is not None:  # the mapped file holds the carved train rows first, then val: views, no copy
        n_train = len(carved[0])
        x, y = checked["train"]
        checked = {"train": (x[:n_train], y[:n_train]), "val": (x[n_train:], y[n_train:]), "test": checked["test"]}
        source_index = carved[0]
    elif "val" not in checked:  # carve a fixed, stratified validation split out of train
        x_train, y_train, x_val, y_val, source_index = _carve_validation(*checked["train"])
        checked = {"train": (x_train, y_train), "val": (x_val, y_val), "test": checked["test"]}
    data = make_audit_data(str(raw.get("name", import_path)), checked, n_classes, source_index, modality)
    if "groups_test" in raw:
        data = dataclasses.replace(data, groups_test=_as_groups(raw["groups_test"], len(data.y_test), where),
                                   groups_source="groups_test in the dataset factory's mapping")
    has_live = "x_live" in raw or _dataset_at(raw, "live") is not None
    return _with_live(data, raw, where, folder) if has_live else data


MODALITIES = ("image", "tabular")
MAX_GROUPS = 50  # more distinct values than this is a continuous feature or an id, not groups
MIN_GROUP_SIZE = 10  # test inputs per group: a rate measured on fewer is noise, whatever its interval says


def _small_groups(labels: np.ndarray) -> list[str]:
    names, counts = np.unique(labels, return_counts=True)
    return [f"'{n}' ({c})" for n, c in zip(names, counts) if c < MIN_GROUP_SIZE]


def _as_groups(value, n_test: int, where: str) -> np.ndarray:
    """groups_test as one string label per test input."""
    try:
        groups = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except Exception as exc:
        raise DataContractError(f"{where}: groups_test cannot be read as an array ({exc}); give one group "
                                "label (int or str) per test input") from exc
    if groups.ndim != 1 or len(groups) != n_test:
        raise DataContractError(f"{where}: groups_test has shape {groups.shape}; give one group label per test "
                                f"input ({n_test})")
    # on the values as given: np.asarray turns a NaN among strings into the string "nan"
    missing = np.flatnonzero(_missing(groups if hasattr(value, "detach") else value))
    if len(missing):  # else NaN and None would be compared as groups named "nan" and "None"
        raise DataContractError(f"{where}: groups_test has {len(missing)} missing value(s) (NaN or None), the first "
                                f"at test input {missing[0]}; drop those inputs from the test split or give them a "
                                "group label (an int or str)")
    labels = groups.astype(str)
    distinct = len(np.unique(labels))
    if not 2 <= distinct <= MAX_GROUPS:
        raise DataContractError(f"{where}: groups_test has {distinct} distinct group(s); give between 2 and "
                                f"{MAX_GROUPS} groups (a sensitive attribute, a region, a data source)")
    small = _small_groups(labels)
    if small:
        raise DataContractError(f"{where}: groups_test has groups with fewer than {MIN_GROUP_SIZE} test inputs: "
                                f"{', '.join(small)}; merge them (a rate measured on so few inputs is noise)")
    return labels


def _missing(groups) -> np.ndarray:
    """Which of the group labels are missing values: NaN, None, NaT or pandas' NA."""
    import pandas as pd

    return np.asarray(pd.isna(np.asarray(groups, dtype=object)), dtype=bool).reshape(-1)


def groups_from_feature(data: AuditData, feature: int) -> AuditData:
    """`data` with groups named by one feature of (N, D) data: its values where it has at most 10
    (a category), else below and at-or-above its training median."""
    if data.modality != "tabular":
        raise DataContractError(f"[tool.swiglu_audit.fairness] group_feature = {feature} needs (N, D) feature "
                                f"vectors; this data is {data.modality}: give groups_test in the dataset instead")
    n_features = data.x_test.shape[-1]
    if not 0 <= feature < n_features:
        raise DataContractError(f"[tool.swiglu_audit.fairness] group_feature = {feature} is not a feature index "
                                f"of this data (0 to {n_features - 1})")
    values = data.x_test[..., feature].reshape(-1).numpy()
    if len(np.unique(values)) <= 10:
        labels = np.array([f"feature {feature} = {v:.4g}" for v in values])
        how = f"the values of feature {feature}"
    else:
        median = float(data.x_train[..., feature].reshape(-1).median())
        labels = np.where(values < median, f"feature {feature} < {median:.4g}", f"feature {feature} >= {median:.4g}")
        how = f"feature {feature} below and at or above its training median {median:.4g}"
    if len(np.unique(labels)) < 2:
        raise DataContractError(f"[tool.swiglu_audit.fairness] group_feature = {feature} takes one value on the "
                                "test split: no groups to compare")
    small = _small_groups(labels)
    if small:
        raise DataContractError(f"[tool.swiglu_audit.fairness] group_feature = {feature} makes groups with fewer "
                                f"than {MIN_GROUP_SIZE} test inputs: {', '.join(small)}; name coarser groups with "
                                "groups_test in the dataset")
    return dataclasses.replace(data, groups_test=labels, groups_source=how)


def _dataset_at(raw, split: str):
    """The Dataset given under `split`'s own name, or None."""
    return raw[split] if split in raw and is_dataset(raw[split]) else None


def _has_split(raw, split: str) -> bool:
    """Is `split` given, as arrays (x_/y_) or as a Dataset under its own name?"""
    return _dataset_at(raw, split) is not None or (f"x_{split}" in raw and f"y_{split}" in raw)


def _validation_order(dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, val) positions of a Dataset given without a validation split: a fixed random fifth
    for val. Not stratified: that would need every label before the one pass over the data. None
    where the Dataset has no usable length (reading it reports that)."""
    from sklearn.model_selection import train_test_split

    try:
        n = len(dataset)
    except Exception:  # noqa: BLE001  # none, negative or raising: the user's __len__, and reading it reports that
        return None
    if n < 2:
        return None
    tr, va = train_test_split(np.arange(n), test_size=VAL_SHARE, random_state=SPLIT_SEED)
    return tr, va


def _modality(raw, where: str, problems: list[str]) -> str:
    """The dataset's `modality`, or what its x_train's shape says: (N, D) is tabular."""
    if "modality" in raw:
        if raw["modality"] not in MODALITIES:
            problems.append(f"{where}: modality = {raw['modality']!r}; give \"image\" or \"tabular\"")
            return "image"
        return str(raw["modality"])
    if _dataset_at(raw, "train") is not None:
        try:
            first = raw["train"][0][0]
        except Exception:  # noqa: BLE001  # reading the Dataset reports it, with the item's index
            return "image"
        return "tabular" if np.ndim(first) == 1 else "image"
    return "tabular" if np.ndim(raw["x_train"]) == 2 else "image"


def _size_problems(pairs: dict, carve: bool, where: str) -> list[str]:
    """Splits smaller than MIN_SPLIT_ROWS, counting the validation split that will be carved out
    of train (VAL_SHARE of it, rounded up as scikit-learn does) where none is given."""
    sizes = {s: len(y) for s, (_, y) in pairs.items() if y is not None}
    carved = carve and "train" in sizes
    if carved:
        sizes["val"] = math.ceil(VAL_SHARE * sizes["train"])
        sizes["train"] -= sizes["val"]
    why = (f"give at least {MIN_SPLIT_ROWS} (every model is probed with a batch of {PROBE_ROWS} validation "
           "inputs, and accuracies are read off the validation and test splits)")
    problems = []
    for split in ("train", "val", "test"):
        if split not in sizes or sizes[split] >= MIN_SPLIT_ROWS:
            continue
        if split == "val" and carved:
            problems.append(f"{where}: the validation split carved out of the training split (a fifth of it) "
                            f"has {sizes['val']} samples; {why}: a larger training split, or x_val and y_val")
        else:
            what = f"the {split} split" + (" left after carving the validation split" if carved and split == "train" else "")
            problems.append(f"{where}: {what} has {sizes[split]} samples; {why}")
    return problems


def _class_problems(y_train: torch.Tensor, n_classes: int, given: bool, where: str) -> list[str]:
    """Fewer than two classes, or classes without a training sample (labels that are not
    0..C-1: 1-based labels leave class 0 empty, raw ids make a head of millions of classes)."""
    present = torch.unique(y_train).tolist()
    source = f"n_classes = {n_classes}" if given else f"n_classes = {n_classes} (the largest label + 1)"
    relabel = "relabel the classes 0..C-1 (np.unique(y, return_inverse=True) does it)"
    if len(present) < 2:
        return [f"{where}: y_train holds one class ({present[0]}); an audit of a classifier needs at least "
                f"2 classes, each with training samples"]
    missing = n_classes - len(present)
    if missing <= 0:
        return []
    first = _first_missing(present, n_classes)
    named = ", ".join(map(str, first)) + (f" and {missing - len(first)} more" if missing > len(first) else "")
    return [f"{where}: {source}, but classes {named} have no training sample (y_train holds {len(present)} "
            f"distinct labels); every class needs training samples: {relabel}"
            + ("" if given else ", or give n_classes")]


def _first_missing(present: list[int], n_classes: int, k: int = 5) -> list[int]:
    """The first `k` of 0..n_classes-1 not in `present` (sorted): gap by gap, not a range of
    millions."""
    out: list[int] = []
    expected = 0
    for label in [*present, n_classes]:
        out += range(expected, min(label, expected + k - len(out)))
        if len(out) >= k:
            break
        expected = label + 1
    return out


def _n_classes(raw, labels: list[torch.Tensor], where: str, problems: list[str]) -> int:
    if "n_classes" not in raw:
        return int(max(int(y.max()) for y in labels)) + 1 if labels else 0
    value = raw["n_classes"]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 2:
        problems.append(f"{where}: n_classes = {value!r}; give the number of classes, an integer >= 2")
        return 0
    return int(value)


def _as_images(value, key: str, where: str, problems: list[str],
               out_of_range: dict[str, tuple[float, float]]) -> torch.Tensor | None:
    """The inputs of one split as float32 (N, C, H, W), or None with the problems appended."""
    try:
        t = _plain_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        problems.append(f"{where}: {key} is not a numeric array ({exc}); give a numpy array or tensor")
        return None
    if t.dtype == torch.bool or t.is_complex():
        problems.append(f"{where}: {key} has dtype {t.dtype}; give real-valued inputs (float32)")
        return None
    if t.ndim == 2:  # (N, D) feature vectors are treated as 1 x 1 x D images
        t = t[:, None, None, :]
    if t.ndim != 4:
        problems.append(f"{where}: {key} must have shape (N, C, H, W) or (N, D); got {tuple(t.shape)}")
        return None
    if _looks_channels_last(t.shape):
        # read as given, its rows of pixels would be channels: triggers, corruptions, shifts and
        # mirrors would all act on the wrong axes, and nothing downstream could tell
        problems.append(f"{where}: {key} has shape {tuple(t.shape)}, which looks channels-last (N, H, W, C) "
                        f"with {t.shape[3]} channel(s); the audit reads (N, C, H, W): give "
                        "x.transpose(0, 3, 1, 2) (numpy) or x.permute(0, 3, 1, 2) (torch)")
        return None
    t = t.float().contiguous()  # no copy for float32 arrays in C order, the common case
    bad, low, high = 0, float("inf"), float("-inf")
    for start in range(0, len(t), CHECK_ROWS):  # in blocks: the checks' temporaries stay small
        block = t[start:start + CHECK_ROWS]
        finite = torch.isfinite(block)
        bad += int((~finite).flatten(1).any(1).sum())
        values = block[finite]
        if values.numel():
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    if bad:
        problems.append(f"{where}: {key} contains NaN or infinite values in {bad} sample(s); remove "
                        "or impute them before the audit")
    if low < 0 or high > 1:
        out_of_range[key] = (low, high)
    # A split with bad values is still returned, so that its length and shape are checked too;
    # the caller raises before anything uses it.
    return t


def _looks_channels_last(shape) -> bool:
    """(N, H, W, C) given where (N, C, H, W) is read: a last axis of 1, 3 or 4 (grey, RGB, RGBA)
    behind two axes of more than 4 (an image's height and width, which no one keeps as channels)."""
    return shape[3] in (1, 3, 4) and shape[1] > 4 and shape[2] > 4


def _plain_tensor(value) -> torch.Tensor:
    """`value` as a CPU tensor outside autograd: the suites call .numpy() on the splits, which
    refuses a tensor that requires grad or lives on a GPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return torch.as_tensor(np.asarray(value))


def _as_labels(value, key: str, where: str, problems: list[str]) -> torch.Tensor | None:
    try:
        t = _plain_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        problems.append(f"{where}: {key} is not a numeric array ({exc}); give integer class indices")
        return None
    if t.ndim != 1:
        problems.append(f"{where}: {key} must be a 1-D array of class indices; got shape {tuple(t.shape)}")
        return None
    if t.dtype == torch.bool or t.is_complex():
        problems.append(f"{where}: {key} has dtype {t.dtype}; give integer class indices")
        return None
    if t.is_floating_point() and not (torch.isfinite(t).all() and torch.equal(t, t.round())):
        problems.append(f"{where}: {key} holds non-integer or non-finite labels; give integer "
                        "class indices")
        return None
    if len(t) and (float(t.min()) < -1 or float(t.max()) >= LABEL_LIMIT):  # .long() would wrap 1e20 silently
        problems.append(f"{where}: {key} holds labels in [{float(t.min()):.6g}, {float(t.max()):.6g}]; give class "
                        f"indices from 0 (-1: an unlabelled live input) to below {LABEL_LIMIT}")
        return None
    return t.long().contiguous()


def _carve_validation(x: torch.Tensor, y: torch.Tensor):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y.numpy())
    n_val, n_classes = math.ceil(VAL_SHARE * len(y)), int((counts > 0).sum())
    # stratified where scikit-learn can: two samples of each class, and room for each in both parts
    stratify = y.numpy() if counts[counts > 0].min() >= 2 and min(n_val, len(y) - n_val) >= n_classes else None
    tr, va = train_test_split(idx, test_size=VAL_SHARE, stratify=stratify, random_state=SPLIT_SEED)
    return x[tr], y[tr], x[va], y[va], tr
