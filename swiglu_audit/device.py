"""Device and mixed-precision choice: CUDA (bf16 autocast), then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib

import torch

from .config import OPT_DEVICE
from .errors import ConfigError


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{OPT_DEVICE}=cuda, but torch sees no CUDA device; use "
                          f"{OPT_DEVICE}=auto or cpu, or install a CUDA build of torch")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{OPT_DEVICE}=mps, but MPS is not available; use {OPT_DEVICE}=auto or cpu")
    return torch.device(requested)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fast, no loss scaling needed); full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device) -> str:
    return "bf16-autocast" if device.type == "cuda" else "float32"
