"""Finding poisoned training samples from a trained model's penultimate activations.

Two published detectors, both run class by class on the training labels (the poison sits in the
class it was relabelled to):

- spectral signatures (Tran, Li and Madry, 2018): poisoned samples leave a trace along the top
  singular vector of the class's centred features; the score is the squared projection on it;
- activation clustering (Chen et al., 2019): reduce the class's features (PCA here: deterministic
  and fast; the paper uses ICA), split them in two with k-means; a poisoned class splits into a
  big clean cluster and a small poisoned one.

Both return a score per sample (higher = more suspicious) and flags chosen without knowing the
poison: a robust z-score above `SPECTRAL_Z` within its class for spectral signatures, membership of
a cluster holding at most `AC_MAX_SHARE` of its class for activation clustering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .ood_metrics import auroc

SPECTRAL_Z = 3.5  # robust z-score cut-off (Iglewicz and Hoaglin's outlier rule)
AC_MAX_SHARE = 0.35  # the cluster-size cut-off of Chen et al.


@dataclass(frozen=True)
class DetectorOutput:
    scores: np.ndarray  # (N,) higher = more suspicious
    flags: np.ndarray  # (N,) bool


def spectral_signatures(features: np.ndarray, labels: np.ndarray) -> DetectorOutput:
    scores = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 3:
            continue
        centred = features[idx] - features[idx].mean(axis=0)
        top = np.linalg.svd(centred, full_matrices=False)[2][0]
        scores[idx] = _robust_z((centred @ top) ** 2)
    return DetectorOutput(scores, scores > SPECTRAL_Z)


def activation_clustering(features: np.ndarray, labels: np.ndarray, n_components: int = 10,
                          seed: int = 0) -> DetectorOutput:
    """Score = 1 - the share of its class that the sample's cluster holds (small cluster: high)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    scores = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 4:
            continue
        k = min(n_components, len(idx) - 1, features.shape[1])
        reduced = PCA(n_components=k, random_state=seed).fit_transform(features[idx])
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        share = np.bincount(assign, minlength=2) / len(idx)
        scores[idx] = 1.0 - share[assign]
    return DetectorOutput(scores, scores >= 1.0 - AC_MAX_SHARE)


# The detector registry: name -> (features, labels, seed) -> scores and flags; the suite scores
# and compares every entry.
POISON_DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray, int], DetectorOutput]] = {
    "spectral": lambda features, labels, seed: spectral_signatures(features, labels),
    "activation_clustering": lambda features, labels, seed: activation_clustering(features, labels, seed=seed),
}
DETECTORS = tuple(POISON_DETECTORS)


def run_detectors(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, DetectorOutput]:
    return {name: detect(features, labels, seed) for name, detect in POISON_DETECTORS.items()}


def detection_metrics(output: DetectorOutput, truth: np.ndarray) -> dict:
    """Precision and recall of the flags, AUROC of the scores; the poisoned samples are positive."""
    truth = np.asarray(truth, bool)
    flagged = int(output.flags.sum())
    hits = int((output.flags & truth).sum())
    return {
        "auroc": auroc(output.scores[truth], output.scores[~truth]) if truth.any() and (~truth).any() else None,
        "precision": hits / flagged if flagged else 0.0,
        "recall": hits / int(truth.sum()) if truth.any() else None,
        "n_flagged": flagged,
    }


def _robust_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    scale = 1.4826 * mad if mad > 0 else (np.std(values) or 1.0)
    return (values - median) / scale
