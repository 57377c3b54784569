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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import batching
from ..nn import eval_mode

DETECTORS = ("msp", "maxlogit", "energy", "odin", "mahalanobis", "knn")


def logit_scores(logits: torch.Tensor) -> dict[str, np.ndarray]:
    logits = logits.float()
    return {"msp": F.softmax(logits, dim=1).max(dim=1).values.numpy(),
            "maxlogit": logits.max(dim=1).values.numpy(),
            "energy": torch.logsumexp(logits, dim=1).numpy()}


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
    def __init__(self, train_features: np.ndarray, train_labels: np.ndarray, ridge: float = 1e-6):
        classes = np.unique(train_labels)
        self.means = np.stack([train_features[train_labels == c].mean(axis=0) for c in classes])
        centred = train_features - self.means[np.searchsorted(classes, train_labels)]
        cov = centred.T @ centred / len(centred)
        cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))  # keeps a rank-deficient covariance invertible
        self.precision = np.linalg.inv(cov)

    def score(self, features: np.ndarray) -> np.ndarray:
        diffs = features[:, None, :] - self.means[None, :, :]  # (N, classes, D)
        distances = np.einsum("ncd,de,nce->nc", diffs, self.precision, diffs)
        return -distances.min(axis=1)


class KNN:
    def __init__(self, train_features: np.ndarray, k: int):
        from sklearn.neighbors import NearestNeighbors

        self.k = min(k, len(train_features))
        self.index = NearestNeighbors(n_neighbors=self.k).fit(_normalise(train_features))

    def score(self, features: np.ndarray) -> np.ndarray:
        distances, _ = self.index.kneighbors(_normalise(features))
        return -distances[:, -1]


def _normalise(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
