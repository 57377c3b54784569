"""Post-training quantisation as models are shipped, and the model's outputs after it.

- int8: dynamic quantisation of every `nn.Linear` (`torch.ao.quantization.quantize_dynamic`):
  int8 weights with one scale per tensor, activations quantised on the fly with one scale per
  call (per batch), as a CPU server runs it. torch runs these kernels on the CPU only, so the
  quantised copy is evaluated on the CPU whatever the audit's device. Convolutions stay float32.
  Where this torch has no `quantize_dynamic` (it is deprecated in favour of torchao), the same
  scheme is simulated (`fake_int8`) and the result says so.
- fp8: float8 e4m3 casts, simulated on every device (values rounded through
  `torch.float8_e4m3fn` and back to float32, each tensor scaled so that its largest |value|
  maps to e4m3's maximum, 448): the weights of every linear and convolution layer once, and the
  FFN hidden activations (`activations.ffn_layers`) on each call.

The share of the model's weights a scheme quantised is measured (`quantised_weight_share`): a
model whose layers none of these types cover is not quantised at all, and the finding says so.

Every scheme evaluates in batches of `SERVING_BATCH` inputs: a dynamic scale is per call, so one
input's outliers set the grid its batch-mates are rounded on, as on a server that batches requests.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..training.activations import ffn_layers
from ..training.nn import eval_mode

SCHEMES = ("int8", "fp8")
SERVING_BATCH = 32
FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
INT8_LEVELS = 127  # per side of zero, symmetric


def quantised_copy(model: nn.Module, scheme: str) -> tuple[nn.Module, torch.device, str]:
    """(a quantised copy of `model`, the device it runs on, how it was quantised in words)."""
    if scheme == "int8":
        return _int8_dynamic(model)
    if scheme == "fp8":
        device = _device_of(model)
        ffn = "and the FFN hidden activations on each call" if ffn_layers(model) else \
            "(no FFN found: its activations stay float32)"
        return fp8_simulated(model), device, (
            "float8 e4m3, simulated by rounding through torch.float8_e4m3fn with one scale per tensor: the "
            f"weights of every nn.Linear and convolution layer {ffn}; nn.MultiheadAttention's packed "
            "projection weights stay float32")
    raise ValueError(f"unknown quantisation scheme {scheme!r}; known: {SCHEMES}")


def quantised_weight_share(model: nn.Module, quantised: nn.Module) -> float:
    """The share of `model`'s weight elements (its parameters of two or more dimensions, each name
    a shared tensor is registered under counted) that `quantised` no longer holds bit for bit:
    replaced by a quantised module, or rounded. A scheme keyed to module types (nn.Linear,
    convolutions) passes over a layer of another type (a custom linear on F.linear, embeddings) and
    leaves it float32; at 0 nothing of the model changed, and its accuracy "after quantisation"
    measures nothing."""
    weights = {name: p for name, p in model.named_parameters(remove_duplicate=False) if p.ndim >= 2}
    total = sum(p.numel() for p in weights.values())
    if not total:
        return 0.0
    kept = dict(quantised.named_parameters(remove_duplicate=False))
    untouched = sum(p.numel() for name, p in weights.items()
                    if name in kept and _same_bits(kept[name], p))
    return 1.0 - untouched / total


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (a NaN weight left as it was is unchanged, which torch.equal denies)."""
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)))


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _int8_dynamic(model: nn.Module) -> tuple[nn.Module, torch.device, str]:
    cpu_copy = copy.deepcopy(model).cpu().eval()
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        quantize_dynamic = None
    if quantize_dynamic is not None:
        try:
            with warnings.catch_warnings():  # its deprecation notices, once per call otherwise
                warnings.simplefilter("ignore")
                quantised = quantize_dynamic(cpu_copy, {nn.Linear}, dtype=torch.qint8)
            return quantised, torch.device("cpu"), (
                f"int8 dynamic quantisation of every nn.Linear layer (torch.ao.quantization.quantize_dynamic, "
                f"engine {torch.backends.quantized.engine}, on the CPU): int8 weights with one scale per tensor, "
                "activations quantised per call; convolutions and nn.MultiheadAttention stay float32")
        except (RuntimeError, AssertionError, NotImplementedError) as exc:
            why = f"quantize_dynamic failed ({type(exc).__name__}: {str(exc)[:120]})"
    else:
        why = "this torch has no torch.ao.quantization.quantize_dynamic"
    return fake_int8(model), _device_of(model), (
        f"int8, simulated ({why}): weights rounded to 255 levels with one scale per tensor, linear-layer "
        "inputs rounded the same way on each call")


def fake_quantise_int8(t: torch.Tensor) -> torch.Tensor:
    """Symmetric per-tensor int8: round to INT8_LEVELS steps each side of zero, scaled by the
    tensor's largest |value|; returned in the input's dtype."""
    scale = t.detach().abs().max().clamp_min(torch.finfo(torch.float32).tiny) / INT8_LEVELS
    return (t / scale).round().clamp(-INT8_LEVELS, INT8_LEVELS) * scale


def fake_quantise_fp8(t: torch.Tensor) -> torch.Tensor:
    """Per-tensor scaled float8 e4m3: the largest |value| maps to 448, every value is rounded
    to e4m3 (3 mantissa bits) and scaled back."""
    if t.device.type == "mps":  # no float8 dtype there: round on the CPU
        return fake_quantise_fp8(t.cpu()).to(t.device)
    scale = t.detach().abs().max().float().clamp_min(torch.finfo(torch.float32).tiny) / FP8_MAX
    return ((t.float() / scale).to(torch.float8_e4m3fn).float() * scale).to(t.dtype)


def fake_int8(model: nn.Module) -> nn.Module:
    """The int8 dynamic scheme simulated: each linear layer's weight rounded once, its input on
    each call."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for layer in out.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(fake_quantise_int8(layer.weight))
                layer.register_forward_pre_hook(lambda module, inputs: (fake_quantise_int8(inputs[0]), *inputs[1:]))
    return out


def fp8_simulated(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for layer in out.modules():
            if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                layer.weight.copy_(fake_quantise_fp8(layer.weight))
    for layer in ffn_layers(out).values():
        layer.register_forward_pre_hook(lambda module, inputs: (fake_quantise_fp8(inputs[0]), *inputs[1:]))
    return out


@torch.no_grad()
def served_logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits in float32 on the CPU, `SERVING_BATCH` inputs per call, in eval mode."""
    with eval_mode(model):
        return torch.cat([model(x[i:i + SERVING_BATCH].to(device)).float().cpu()
                          for i in range(0, len(x), SERVING_BATCH)])
