"""Data integrity: duplicates across and within splits, and likely label errors.

Model-free, so each runs once per audit on the configured dataset (built-in or the user's).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _rows(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy().reshape(len(x), -1), dtype=np.float32)


def exact_duplicates(a: torch.Tensor, b: torch.Tensor | None = None) -> list[tuple[int, int]]:
    """(i, j) with a[i] byte-identical to b[j]; within `a` (i < j) when `b` is None."""
    first: dict[bytes, list[int]] = {}
    for i, row in enumerate(_rows(a)):
        first.setdefault(hashlib.sha256(row.tobytes()).digest(), []).append(i)
    if b is None:
        return [(ids[0], j) for ids in first.values() for j in ids[1:]]
    return [(i, j) for j, row in enumerate(_rows(b))
            for i in first.get(hashlib.sha256(row.tobytes()).digest(), [])[:1]]


def near_duplicates(a: torch.Tensor, b: torch.Tensor | None, max_rms: float) -> list[tuple[int, int, float]]:
    """(i, j, rms) with the RMS pixel difference of a[i] and b[j] at most `max_rms` (exact copies
    included); each j of `b` is paired with its nearest sample of `a`. Within `a` when `b` is None:
    each sample with an earlier sample that close."""
    from sklearn.neighbors import NearestNeighbors

    ra = _rows(a)
    queries = ra if b is None else _rows(b)
    dims = ra.shape[1]
    nn = NearestNeighbors(n_neighbors=2 if b is None else 1).fit(ra)
    dist, idx = nn.kneighbors(queries)
    out = []
    for j in range(len(queries)):
        for d, i in zip(dist[j], idx[j]):
            if b is None and i == j:
                continue
            rms = float(d) / np.sqrt(dims)
            if rms <= max_rms and (b is not None or i < j):
                out.append((int(i), j, round(rms, 6)))
                break
    return out


def label_issues(x: torch.Tensor, y: torch.Tensor, n_classes: int, folds: int = 5, seed: int = 0) -> dict:
    """Confident-learning flags from out-of-fold probabilities.

    A sample is flagged when p(given label) is below that class's threshold (the mean p(c) over
    samples labelled c) and some other class's p is at or above its own threshold; flagged
    samples are ranked by how little confidence their label gets."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    features, labels = _rows(x), y.cpu().numpy()
    smallest_class = np.bincount(labels, minlength=n_classes)[np.unique(labels)].min()
    folds = max(2, min(folds, int(smallest_class)))
    model = make_pipeline(PCA(n_components=min(64, *features.shape), random_state=seed),
                          LogisticRegression(max_iter=2000))
    probs = cross_val_predict(model, features, labels, method="predict_proba",
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    present = np.unique(labels)  # cross_val_predict's columns are the classes present, in order
    full = np.zeros((len(labels), n_classes))
    full[:, present] = probs
    thresholds = np.array([full[labels == c, c].mean() if (labels == c).any() else 1.0
                           for c in range(n_classes)])
    given = full[np.arange(len(labels)), labels]
    others = full.copy()
    others[np.arange(len(labels)), labels] = -1.0
    confident_other = (others >= thresholds[None, :]).any(axis=1)
    flagged = np.flatnonzero((given < thresholds[labels]) & confident_other)
    flagged = flagged[np.argsort(given[flagged])]
    return {"indices": flagged.tolist(), "suggested": others[flagged].argmax(axis=1).tolist(),
            "given_probability": given[flagged].round(4).tolist(), "n_folds": folds}
