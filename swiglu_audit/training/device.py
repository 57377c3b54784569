"""Device and mixed-precision choice: CUDA (bf16 autocast), then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib
import os

import torch

from ..config import OPT_DEVICE
from ..errors import ConfigError


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


# cuBLAS is bitwise reproducible only with a fixed workspace; it reads this variable when its first
# handle is created, so the plugin sets it (unless the user did) before anything touches CUDA.
CUBLAS_WORKSPACE = ":4096:8"


def prepare_cuda_determinism() -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic_algorithms():
    """torch's deterministic kernels for the duration (the determinism check trains twice under
    it); `warn_only` because a user's model may call an op that has no deterministic form, which
    the check then reports as a difference rather than crashing on."""
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_before = torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        torch.backends.cudnn.deterministic = cudnn_before


def math_settings(device: torch.device) -> dict:
    """The settings that decide which kernels and precisions run, as the report records them:
    TF32 in float32 matmuls and convolutions, cuDNN autotuning and determinism, the float32
    matmul precision, deterministic algorithms, and the cuBLAS workspace."""
    settings = {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "autocast": "bfloat16 (training, and the bf16 checks)" if device.type == "cuda" else None,
    }
    if device.type == "cuda":
        settings.update({
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cuda_matmul_allow_bf16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_version": torch.backends.cudnn.version(),
            "cuda_version": torch.version.cuda,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        })
    return settings
