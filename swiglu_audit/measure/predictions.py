"""Predicted classes of trained models on given inputs, cached on disk like every measurement.

Most checks of poisoned and attacked models only ask what each model predicts on a set of inputs.
Kept in the cache (keyed by the models' weights, a digest of the inputs, the device and the code),
a warm audit answers them without reading the models' weights at all.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..training import train as train_module
from ..training.cache import code_digest, tensors_digest
from ..training.train import predict_logits

if TYPE_CHECKING:
    from ..session import AuditSession
    from ..training.zoo import TrainedModel


def predicted_classes(audit: AuditSession, models: list[TrainedModel], x: torch.Tensor) -> np.ndarray:
    """(seeds x inputs) the class each model predicts for each input."""
    def compute():
        classes = np.stack([predict_logits(m.module, x, audit.device).argmax(1).numpy() for m in models])
        return {"classes": classes}, {}

    arrays, _ = audit.cached_arrays("predicted-classes", models, {"inputs": tensors_digest({"x": x})},
                                    _CODE_DIGEST, compute)
    return arrays["classes"]


def predicted_as(audit: AuditSession, models: list[TrainedModel], x: torch.Tensor, labels) -> np.ndarray:
    """(seeds x inputs): does each model predict `labels` (a tensor, or one class for all)?"""
    wanted = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return predicted_classes(audit, models, x) == wanted


_CODE_DIGEST = code_digest(sys.modules[__name__], train_module)
