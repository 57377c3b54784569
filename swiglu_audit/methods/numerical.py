"""Numerical regression methods: the SwiGLU op against a float64 reference (property-based),
half-precision parity and headroom, weight differences, golden-file keys and device parity."""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..training.activations import ffn_layers
from ..training.nn import eval_mode

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504

# Tolerances of the op check, per dtype: |impl - ref| <= atol + rtol * |ref|
OP_TOLERANCES = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-6, 1e-5),
    torch.bfloat16: (1e-2, 2e-2),
    torch.float16: (1e-3, 2e-3),
}


def reference_swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in float64, written out (x * sigmoid(x)) rather than through F.silu."""
    g, u = gate.double(), up.double()
    return g * torch.sigmoid(g) * u


def compare_op(impl: Callable, gate: torch.Tensor, up: torch.Tensor) -> dict:
    """Forward and backward of `impl` against the float64 reference, at the inputs' dtype.

    Returns the worst error as a multiple of the dtype's tolerance (<= 1 passes), and where it was.
    The tolerance of each quantity grows with the magnitude of the factor it is multiplied by
    (|up| for the output, |w * up| for the gate's gradient, |w| for up's), because a correct
    low-precision implementation rounds silu(gate) before multiplying.
    """
    dtype = gate.dtype
    atol, rtol = OP_TOLERANCES[dtype]
    g = gate.detach().clone().requires_grad_(True)
    u = up.detach().clone().requires_grad_(True)
    g64 = gate.detach().double().requires_grad_(True)
    u64 = up.detach().double().requires_grad_(True)
    ref = reference_swiglu(g64, u64)
    weight = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weight = weight.to(dtype).double()  # the upstream gradient, representable in the dtype
    (ref * weight).sum().backward()
    result = {"dtype": str(dtype).replace("torch.", ""), "shape": list(gate.shape), "worst_ratio": 0.0,
              "where": None}
    out = impl(g, u)
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape or out.dtype != dtype:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        result.update(worst_ratio=float("inf"), where=f"output {shape} / {getattr(out, 'dtype', '?')}, "
                                                      f"expected {tuple(ref.shape)} / {dtype}")
        return result
    if out.requires_grad:
        (out * weight.to(dtype)).sum().backward()
    finfo_max = torch.finfo(dtype).max
    scales = {"output": u64.detach().abs(), "grad_gate": (weight * u64.detach()).abs(), "grad_up": weight.abs()}
    for name, got, want in (("output", out.detach(), ref.detach()), ("grad_gate", g.grad, g64.grad),
                            ("grad_up", u.grad, u64.grad)):
        if got is None:
            result.update(worst_ratio=float("inf"), where=f"{name}: no gradient")
            return result
        got = got.double()
        # Outputs must be finite wherever the reference is representable in this dtype.
        representable = torch.isfinite(want) & (want.abs() <= finfo_max)
        bad = representable & ~torch.isfinite(got)
        if bad.any():
            result.update(worst_ratio=float("inf"),
                          where=f"{name} is not finite where the reference is {float(want[bad][0]):.4g}")
            return result
        if representable.any():
            scale = scales[name][representable]
            err = (got - want)[representable].abs()
            ratio = err / (atol * (1 + scale) + rtol * (want[representable].abs() + scale))
            worst = float(ratio.max())
            if worst > result["worst_ratio"]:
                i = int(ratio.argmax())
                result.update(worst_ratio=worst, where=f"{name}: error {float(err[i]):.4g} where the "
                                                       f"reference is {float(want[representable][i]):.6g}")
    return result


# Largest |value| drawn per dtype: far enough that gate x up can overflow the narrow dtypes.
_VALUE_RANGE = {torch.float64: 1e100, torch.float32: 1e18, torch.bfloat16: 1e18, torch.float16: 400.0}


def check_implementation(impl: Callable, max_examples: int,
                         dtypes: tuple = (torch.float64, torch.float32, torch.bfloat16, torch.float16)) -> dict:
    """Property-based check of `impl(gate, up)` against the float64 reference.

    hypothesis draws shapes, dtypes and values (ordinary ones, tiny and huge magnitudes, zeros);
    on a failure it shrinks to a minimal example, which is returned (inputs included).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    @st.composite
    def cases(draw):
        dtype = draw(st.sampled_from(dtypes))
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
        bound = _VALUE_RANGE[dtype]
        elements = st.one_of(st.floats(-8, 8), st.floats(-bound, bound), st.sampled_from([0.0, -0.0, 1e-30, -1e-30]))
        gate = draw(hnp.arrays(np.float64, shape, elements=elements))
        up = draw(hnp.arrays(np.float64, shape, elements=elements))
        return torch.from_numpy(gate).to(dtype), torch.from_numpy(up).to(dtype)

    seen = {"examples": 0, "worst_ratio": 0.0, "failure": None}

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(cases())
    def property_holds(case):
        gate, up = case
        seen["examples"] += 1
        try:
            r = compare_op(impl, gate, up)
        except Exception as exc:  # an implementation that crashes on some input fails too
            r = {"dtype": str(gate.dtype), "shape": list(gate.shape), "worst_ratio": float("inf"),
                 "where": f"raised {type(exc).__name__}: {exc}"}
        if not r["worst_ratio"] <= 1.0:
            # hypothesis replays the shrunk example last, so the last one recorded is minimal
            seen["failure"] = {**r, "gate": gate.double().tolist(), "up": up.double().tolist()}
            raise AssertionError(r["where"])
        seen["worst_ratio"] = max(seen["worst_ratio"], r["worst_ratio"])

    try:
        property_holds()
        passed = True
    except AssertionError:
        passed = False
    return {"passed": passed, "examples": seen["examples"], "worst_ratio": seen["worst_ratio"],
            "minimal_failure": seen["failure"]}


def gradcheck_implementation(impl: Callable, seed: int = 0) -> dict:
    """torch.autograd.gradcheck in float64 on a small random input."""
    g = torch.Generator().manual_seed(seed)
    gate = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    try:
        ok = torch.autograd.gradcheck(impl, (gate, up), eps=1e-6, atol=1e-5, raise_exception=True)
        return {"passed": bool(ok), "error": None}
    except Exception as exc:
        return {"passed": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}


def ffn_hidden_absmax(model: nn.Module, x: torch.Tensor) -> float | None:
    """Largest |hidden activation| entering any FFN's down projection on inputs x (for a gated FFN
    the gate x up product, where float16 overflows first), or None when the model has no FFN the
    audit can find (`activations.ffn_layers`: the LLaMA naming or a marked layer) or its forward
    pass calls none. Never a Linear layer's output instead: that misses the gated product."""
    layers = ffn_layers(model)
    if not layers:
        return None
    peak: list[float] = []

    def hook(module, inputs):
        peak.append(float(inputs[0].detach().abs().max().float()))

    handles = [layer.register_forward_pre_hook(hook) for layer in layers.values()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return max(peak) if peak else None  # layers the forward pass never called measured nothing


@torch.no_grad()
def half_parity(model: nn.Module, x: torch.Tensor, dtype: str = "float16") -> dict:
    """float32 against float16 (a half copy of the model) or bfloat16 (autocast): flips per
    example, largest logit deviation, and the FFN headroom to the float16 maximum (None, with
    ffn_absmax, where the model has no FFN the audit can find)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        x = x.to(device)
        ref = model(x).float()
        if dtype == "float16":
            out = copy.deepcopy(model).half()(x.half()).float()
        elif dtype == "bfloat16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(x).float()
        else:
            raise ValueError(f"half_parity: dtype must be float16 or bfloat16, got {dtype!r}")
        absmax = ffn_hidden_absmax(model, x)
    finite = bool(torch.isfinite(out).all())
    flips = (ref.argmax(1) != out.argmax(1)).cpu().numpy()
    deviation = float((ref - out).abs().max()) if finite else float("inf")
    return {"flips": flips, "max_logit_deviation": deviation, "finite": finite, "ffn_absmax": absmax,
            "headroom": fp16_headroom(absmax)}


def fp16_headroom(absmax: float | None) -> float | None:
    """float16's maximum over the largest FFN activation; None where that was not measured."""
    if absmax is None:
        return None
    return FP16_MAX / absmax if absmax > 0 else float("inf")


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b|, where a NaN in one tensor that the other lacks at the same place is an
    infinite difference (a run that diverged once); NaN in both at the same place is no difference.
    (torch's max of a NaN is NaN, and max(0.0, nan) is 0.0: a NaN would pass as agreement.)"""
    if not a.numel():
        return 0.0
    a, b = a.detach().double(), b.detach().double()
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if bool((nan_a != nan_b).any()):
        return float("inf")
    both = nan_a & nan_b
    diff = (a - b).abs()
    # inf - inf is NaN: equal infinities agree, opposite ones cannot reach here as NaN
    diff = torch.where(both | (a == b), torch.zeros_like(diff), diff)
    return float(diff.max())


def state_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str | None]:
    """Largest absolute difference between two state dicts, and the tensor where it is."""
    worst, where = 0.0, None
    for name in a:
        if name not in b or a[name].shape != b[name].shape or a[name].dtype != b[name].dtype:
            return float("inf"), name
        if a[name].is_floating_point():
            diff = max_difference(a[name], b[name])
        else:
            diff = 0.0 if torch.equal(a[name], b[name]) else float("inf")
        if diff > worst:
            worst, where = diff, name
    return worst, where


def platform_key(device: torch.device, dtype: str = "float32") -> str:
    """Golden files are only comparable on the same platform, device type, torch and dtype."""
    import platform as _platform

    torch_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return f"{sys.platform}-{_platform.machine()}-{device.type}-torch{torch_minor}-{dtype}"


def probe_digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


@torch.no_grad()
def device_parity(model: nn.Module, x: torch.Tensor) -> dict:
    """Logits of `model` on its own device against a CPU copy of it, on the same inputs."""
    device = next(model.parameters()).device
    with eval_mode(model):
        on_device = model(x.to(device)).float().cpu()
        on_cpu = copy.deepcopy(model).cpu().eval()(x.cpu()).float()
    return {"device": device.type, "max_logit_deviation": max_difference(on_device, on_cpu),
            "flips": (on_device.argmax(1) != on_cpu.argmax(1)).numpy()}
