"""Penultimate features of a model: what the poison detectors and the feature-space OOD detectors read.

Built-in models expose `forward_features`. For a user's model we take the input of its last
`nn.Linear` (the classification head in nearly every classifier), through a forward hook.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelContractError
from . import batching
from .nn import eval_mode


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, device: torch.device,
                         batch_size: int | None = None) -> torch.Tensor:
    """(N, D) float32 features on the CPU, in batches that follow the device's free memory."""
    batch_size = batch_size or batching.batch_size(model, x[:1], device)
    chunks = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            chunks.append(_features(model, x[i:i + batch_size].to(device)).float().cpu())
    return torch.cat(chunks)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "forward_features"):
        return model.forward_features(x).flatten(1)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not head:
        raise ModelContractError(
            f"{type(model).__name__} has no forward_features method and no nn.Linear layer, so the "
            "audit cannot read its penultimate features; add forward_features(x) -> (N, D)")
    captured = []
    handle = head[-1].register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[-1].flatten(1)
