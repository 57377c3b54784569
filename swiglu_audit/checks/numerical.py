"""Numerical regression: float16 parity and overflow headroom of each trained model."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..nn import FeedForward
from ..risk import CheckInfo

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504

FP16_PARITY = CheckInfo(
    suite="numerical", check="fp16_parity", title="float16 parity and overflow headroom",
    metric="prediction flip rate (float16 vs float32)", rmf=("MEASURE 2.5", "MEASURE 4.3"),
    characteristic="valid_reliable", impact="moderate",
    explanation="The model is run in float32 and in float16 on the same inputs; the finding is the "
                "share of predictions that change, with the largest logit deviation and the "
                "headroom between float16's maximum (65504) and the largest activation inside any "
                "FFN (for gated FFNs, the gate x up product, where half precision overflows first).",
    mitigation="Serve in bfloat16 or float32, clamp or rescale FFN activations, or keep the FFN "
               "product in float32 inside a fused kernel.",
)


def ffn_hidden_absmax(model: nn.Module, x: torch.Tensor) -> float:
    """Largest |hidden activation| entering any FeedForward's down projection on inputs x.

    Models without our FeedForward modules fall back to the largest |output| of any Linear layer.
    """
    targets = [m.down_proj for m in model.modules() if isinstance(m, FeedForward)]
    use_input = bool(targets)
    if not targets:
        targets = [m for m in model.modules() if isinstance(m, nn.Linear)]
    peak = [0.0]

    def hook(module, inputs, output=None):
        t = inputs[0] if use_input else output
        peak[0] = max(peak[0], float(t.detach().abs().max().float()))

    handles = [t.register_forward_pre_hook(hook) if use_input else t.register_forward_hook(hook)
               for t in targets]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return peak[0]


@torch.no_grad()
def fp16_parity(model: nn.Module, x: torch.Tensor) -> dict:
    """Run float32 and float16 copies; report flips (per example), deviation and headroom."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = x.to(device)
        ref = model(x).float()
        half = copy.deepcopy(model).half()
        out = half(x.half()).float()
        absmax = ffn_hidden_absmax(model, x)
    finally:
        model.train(was_training)
    finite = bool(torch.isfinite(out).all())
    flips = (ref.argmax(1) != out.argmax(1)).cpu().numpy()
    deviation = float((ref - out).abs().max()) if finite else float("inf")
    return {"flips": flips, "max_logit_deviation": deviation, "finite": finite,
            "ffn_absmax": absmax, "headroom": FP16_MAX / absmax if absmax > 0 else float("inf")}
