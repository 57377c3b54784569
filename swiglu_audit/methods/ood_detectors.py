"""OOD detectors. Each maps inputs to a score that is higher for inputs it believes in-distribution.

- MSP (Hendrycks and Gimpel, 2017): the maximum softmax probability.
- MaxLogit (Hendrycks et al., 2022): the largest logit.
- Energy (Liu et al., 2020): T * logsumexp(logits / T), with T = 1.
- ODIN (Liang et al., 2018): MSP at temperature T after a small input step that raises it; the
  step is clipped to the valid input range [0, 1].
- Mahalanobis (Lee et al., 2018): minus the smallest class-conditional Mahalanobis distance of
  the penultimate features, class means and one shared covariance fitted on the training split.
- KNN (Sun et al., 2022): minus the distance of the L2-normalised penultimate features to their
  k-th nearest neighbour among the training split's.
The feature-space detectors are fitted on training data only, never on test or OOD inputs.

Every detector follows one protocol: `needs` says what it reads ("logits", "model" for a detector
that differentiates the model, "features" for the penultimate activations), `fit` sees the
training split's features and labels (a no-op where nothing is learned), and `score` maps the
`Evidence` of a batch of inputs to one score per input. `OOD_DETECTORS` is the registry; adding a
detector is one class and one entry here, plus a test in tests/test_ood.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training import batching
from ..training.nn import eval_mode


@dataclass(frozen=True)
class DetectorParams:
    """The settings the registered detectors read."""

    knn_k: int = 10
    odin_temperature: float = 1000.0
    odin_eps: float = 0.002


@dataclass(frozen=True)
class Evidence:
    """What a detector may read about a batch of inputs; `features` only when one needs them."""

    x: torch.Tensor
    logits: torch.Tensor
    model: nn.Module
    device: torch.device
    features: np.ndarray | None = None


class Detector(Protocol):
    needs: str  # "logits", "model" or "features"

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray) -> Detector: ...

    def score(self, evidence: Evidence) -> np.ndarray: ...


class _FromLogits:
    """A detector that reads the logits alone and learns nothing."""

    needs = "logits"

    def __init__(self, from_logits: Callable[[torch.Tensor], torch.Tensor]):
        self.from_logits = from_logits

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray) -> _FromLogits:
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        return self.from_logits(evidence.logits.float()).numpy()


class Odin:
    needs = "model"

    def __init__(self, temperature: float, eps: float):
        self.temperature, self.eps = temperature, eps

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray) -> Odin:
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        return odin_scores(evidence.model, evidence.x, evidence.device, self.temperature, self.eps)


def odin_scores(model: nn.Module, x: torch.Tensor, device: torch.device, temperature: float,
                eps: float, batch_size: int | None = None) -> np.ndarray:
    batch_size = batch_size or batching.batch_size(model, x[:1], device, gradients=True)
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device).clone().requires_grad_(True)
            log_msp = F.log_softmax(model(xb).float() / temperature, dim=1).max(dim=1).values
            (grad,) = torch.autograd.grad(log_msp.sum(), xb)
            stepped = (xb + eps * grad.sign()).clamp(0.0, 1.0).detach()
            with torch.no_grad():
                out.append(F.softmax(model(stepped).float() / temperature, dim=1).max(dim=1).values.cpu())
    return torch.cat(out).numpy()


class Mahalanobis:
    needs = "features"

    def __init__(self, ridge: float = 1e-6):
        self.ridge = ridge

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray) -> Mahalanobis:
        classes = np.unique(train_labels)
        self.means_ = np.stack([train_features[train_labels == c].mean(axis=0) for c in classes])
        centred = train_features - self.means_[np.searchsorted(classes, train_labels)]
        cov = centred.T @ centred / len(centred)
        cov += self.ridge * np.trace(cov) / len(cov) * np.eye(len(cov))  # keeps a rank-deficient covariance invertible
        self.precision_ = np.linalg.inv(cov)
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        return self.score_features(evidence.features)

    def score_features(self, features) -> np.ndarray:
        diffs = features[:, None, :] - self.means_[None, :, :]  # (N, classes, D)
        distances = np.einsum("ncd,de,nce->nc", diffs, self.precision_, diffs)
        return -distances.min(axis=1)


class KNN:
    needs = "features"

    def __init__(self, k: int):
        self.k = k

    def fit(self, train_features: np.ndarray, train_labels: np.ndarray) -> KNN:
        from sklearn.neighbors import NearestNeighbors

        # scikit-learn's convention: the constructor's k stays as given; what fit learns ends in _
        self.k_ = min(self.k, len(train_features))
        self.index_ = NearestNeighbors(n_neighbors=self.k_).fit(_normalise(train_features))
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        return self.score_features(evidence.features)

    def score_features(self, features) -> np.ndarray:
        distances, _ = self.index_.kneighbors(_normalise(features))
        return -distances[:, -1]


def _normalise(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


# The detector registry: name -> a new, unfitted detector for the settings. The order is the
# report's.
OOD_DETECTORS: dict[str, Callable[[DetectorParams], Detector]] = {
    "msp": lambda p: _FromLogits(lambda logits: F.softmax(logits, dim=1).max(dim=1).values),
    "maxlogit": lambda p: _FromLogits(lambda logits: logits.max(dim=1).values),
    "energy": lambda p: _FromLogits(lambda logits: torch.logsumexp(logits, dim=1)),  # T = 1
    "odin": lambda p: Odin(p.odin_temperature, p.odin_eps),
    "mahalanobis": lambda p: Mahalanobis(),
    "knn": lambda p: KNN(p.knn_k),
}
DETECTORS = tuple(OOD_DETECTORS)
