"""The FFN's hidden activation, the tensor low-precision deployment breaks on: which layers carry
it, how to capture it, and the statistics that say how outlier-heavy it is.

The hidden activation is the input of an FFN's down projection: act(gate(x)) * up(x) in a gated
FFN (SwiGLU's product of two projections, quadratic in the input), act(up(x)) in an ungated one.
A single large channel there sets the scale of a per-tensor int8 or float8 grid, and every other
value loses its resolution (Dettmers et al. 2022, LLM.int8(); Fishman et al. 2024 on SwiGLU).

Where the layers are found, in this order:
1. any `nn.Linear` a user marked with the attribute `swiglu_audit_ffn = True` (set it on the
   down projection, the layer whose input is the hidden activation: `model.mlp.down.swiglu_audit_ffn = True`);
2. otherwise the `down_proj` of every module that has `up_proj` and `down_proj` (the zoo's
   FeedForward, and the LLaMA naming that most SwiGLU code follows).
A model with neither has no FFN the audit can find; its outliers are not measured, and the
finding says how to mark them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

FFN_MARKER = "swiglu_audit_ffn"
# Quantiles are taken on at most this many values (an even stride through the tensor): exact
# enough for a median and a 99.9th percentile, and cheap enough to run at every curve point.
_QUANTILE_SAMPLE = 1 << 16
_CURVE_QUANTILE_SAMPLE = 1 << 13  # at every curve point of a training: lighter still


def ffn_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """name -> the down projection of each FFN, in the order `named_modules` gives them."""
    marked = {name: m for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and getattr(m, FFN_MARKER, False)}
    if marked:
        return marked
    found = {}
    for name, module in model.named_modules():
        down = getattr(module, "down_proj", None)
        if isinstance(down, nn.Linear) and hasattr(module, "up_proj"):
            found[f"{name}.down_proj" if name else "down_proj"] = down
    return found


@contextlib.contextmanager
def captured_inputs(layers: dict[str, nn.Module]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """While open, every call of each layer appends its input, as (leading dimension, rows,
    features) float32 (a (batch, features) input has one row), to the yielded dict's list for
    that layer."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook_for(name: str):
        def hook(module, inputs):
            h = inputs[0].detach()
            seen[name].append(h.reshape(h.shape[0], -1, h.shape[-1]).float())
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _typical(magnitudes: torch.Tensor, sample: int) -> tuple[float, float]:
    """(median, 99.9th percentile) of the non-zero magnitudes, on at most `sample` of them."""
    nonzero = magnitudes[magnitudes > 0]
    if not nonzero.numel():
        return 0.0, 0.0
    if nonzero.numel() > sample:  # a fixed random draw: a stride would keep the same few channels
        nonzero = nonzero[torch.randint(0, nonzero.numel(), (sample,), generator=torch.Generator().manual_seed(0))]
    median, p999 = torch.quantile(nonzero, torch.tensor([0.5, 0.999])).tolist()
    return median, p999


def _kurtosis(values: torch.Tensor) -> float:
    centred = values.double() - values.double().mean()
    variance = float((centred ** 2).mean())
    return float((centred ** 4).mean()) / variance ** 2 if variance > 0 else float("nan")


def activation_stats(h: torch.Tensor) -> dict:
    """How outlier-heavy one layer's hidden activation is. `h` is (rows, channels).

    - absmax: the largest |value|; median and p999: the median and 99.9th percentile of the
      non-zero |values| (a ReLU's exact zeros need no resolution);
    - ratio_to_median, ratio_to_p999: absmax over each (torch's dynamic int8 rounds an
      activation to 127 steps over [min, max], about 2 absmax / 127 each for values of both signs,
      so above a ratio of about 127 the median value rounds to zero);
    - kurtosis: E[(v - mean)^4] / Var^2 over all values (3 for a Gaussian; heavy tails raise it);
    - top_channel: the channel holding absmax, and top_channel_ratio: its largest |value| over the
      median live channel's largest |value| (a few such channels are the LLM.int8 picture).
    """
    h = h.detach().float().reshape(-1, h.shape[-1])
    values = h.reshape(-1)
    magnitudes = values.abs()
    # exact zeros (ReLU silences about half its units) sit exactly on any grid: "typical" is
    # taken over the values a quantiser has to round
    median, p999 = _typical(magnitudes, _QUANTILE_SAMPLE)
    absmax = float(magnitudes.max())
    kurtosis = _kurtosis(values)
    per_channel = h.abs().amax(dim=0)
    live = per_channel[per_channel > 0]  # dead channels round to zero whatever the grid
    channel_median = float(live.median()) if live.numel() else 0.0
    return {
        "absmax": absmax, "median": median, "p999": p999,
        "ratio_to_median": _ratio(absmax, median), "ratio_to_p999": _ratio(absmax, p999),
        "kurtosis": kurtosis, "top_channel": int(per_channel.argmax()),
        "top_channel_ratio": _ratio(float(per_channel.max()), channel_median),
    }


def row_peak_ratios(h: torch.Tensor, median: float) -> torch.Tensor:
    """Per input (the leading dimension; an input's tokens are its rows) the largest |value| over
    the layer's median |value|: the per-example quantity the comparison averages. A median of 0
    (an all-zero layer: the median is over non-zero values) gives 0 where the peak is 0 too, as
    `_ratio` does, so that a dead layer adds nothing rather than an infinity; a peak above a
    median of 0 (a median from elsewhere) stays infinite."""
    peaks = h.detach().float().abs().reshape(len(h), -1).amax(dim=1)
    if median > 0:
        return peaks / median
    return torch.where(peaks > 0, torch.full_like(peaks, float("inf")), torch.zeros_like(peaks))


def _ratio(top: float, typical: float) -> float:
    if typical > 0:
        return top / typical
    return 0.0 if top == 0 else float("inf")


@torch.no_grad()
def outlier_point(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Linear] | None = None,
                  forward=None) -> dict[str, dict]:
    """Each FFN layer's `activation_stats` (absmax, median, p999, kurtosis) on inputs x: one point
    of the outlier curve a training records. `forward(x)` runs the model (a stacked member's
    functional call) where it is not `model(x)` itself; either way the hooks are on `model`'s layers."""
    layers = ffn_layers(model) if layers is None else layers
    if not layers:
        return {}
    with captured_inputs(layers) as seen:
        (forward or model)(x)
    out = {}
    for name, parts in seen.items():
        if parts:
            # the curve's light form of activation_stats: a smaller quantile sample, no channels
            values = torch.cat(parts).reshape(-1)
            magnitudes = values.abs()
            median, p999 = _typical(magnitudes, _CURVE_QUANTILE_SAMPLE)
            out[name] = {"absmax": _rounded(float(magnitudes.max())), "median": _rounded(median),
                         "p999": _rounded(p999), "kurtosis": _rounded(_kurtosis(values))}
    return out


def _rounded(v: float) -> float | None:
    return float(f"{v:.5g}") if math.isfinite(v) else None
