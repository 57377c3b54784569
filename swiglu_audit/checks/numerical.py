"""Numerical regression: the SwiGLU op against a float64 reference (property-based), half-precision
parity and headroom, determinism, golden outputs and checkpoint round-trips."""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn import FeedForward, eval_mode
from ..risk import CheckInfo

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504

_TAGS = dict(rmf=("MEASURE 2.5", "MEASURE 4.3"), characteristic="valid_reliable")

PRECISION_PARITY = CheckInfo(
    suite="numerical", check="precision_parity", title="Half-precision parity and overflow headroom",
    metric="prediction flip rate (half vs float32)", impact="moderate", **_TAGS,
    explanation="The model runs in float32 and in half precision (float16 weights and inputs, or "
                "bfloat16 autocast) on the same inputs; the finding is the share of predictions that "
                "change, with the largest logit deviation and the headroom between float16's maximum "
                "(65504) and the largest activation inside any FFN (for gated FFNs, the gate x up "
                "product, where half precision overflows first).",
    mitigation="Serve in bfloat16 or float32, clamp or rescale FFN activations, or keep the FFN "
               "product in float32 inside a fused kernel.",
)

OP_PROPERTY = CheckInfo(
    suite="numerical", check="swiglu_op_property", title="SwiGLU op against a float64 reference (property-based)",
    metric="largest error in units of the dtype's tolerance", impact="high", **_TAGS,
    explanation="For random shapes, dtypes (float64, float32, bfloat16, float16) and value ranges "
                "including extremes, the implementation's forward and backward are compared with "
                "silu(gate) * up computed in float64, within tolerances that depend on the dtype; "
                "outputs must be finite wherever the float64 result is representable in the dtype. A "
                "failure is shrunk by hypothesis to a minimal example, printed in the details.",
    mitigation="Fix the implementation (a fused kernel must compute silu(gate) * up, with silu(x) = "
               "x * sigmoid(x)), or keep the reference implementation.",
)

GRADCHECK = CheckInfo(
    suite="numerical", check="swiglu_gradcheck", title="SwiGLU gradients by finite differences (float64)",
    metric="gradcheck passed", impact="moderate", **_TAGS,
    explanation="torch.autograd.gradcheck compares the analytic gradient of the implementation with "
                "finite differences in float64.",
    mitigation="Fix the implementation's backward, or let autograd derive it.",
)

DETERMINISM = CheckInfo(
    suite="numerical", check="training_determinism", title="Same seed, same weights and outputs",
    metric="largest weight difference between two seeded trainings", impact="moderate", **_TAGS,
    explanation="The model is trained twice, briefly, from the same seed; weights and outputs must be "
                "identical (bitwise on CPU). Where the device cannot be bitwise deterministic the "
                "spread is measured and bounded by the policy.",
    mitigation="Set seeds for every source of randomness, use deterministic algorithms "
               "(torch.use_deterministic_algorithms), and pin library versions.",
)

GOLDEN = CheckInfo(
    suite="numerical", check="golden_outputs", title="Logits against stored golden outputs",
    metric="largest logit deviation from the golden file", impact="moderate", **_TAGS,
    explanation="Logits of the model on a fixed probe set are compared with the golden file stored "
                "for this platform and dtype by an earlier run. A deviation beyond the tolerance "
                "means the model or the numerics underneath it changed.",
    mitigation="If the change is intended (new weights, new library versions), review it and "
               "regenerate the golden files with --swiglu-audit-update-golden; if not, bisect it.",
)

ROUNDTRIP = CheckInfo(
    suite="numerical", check="checkpoint_roundtrip", title="Checkpoint round-trip through the cache",
    metric="tensors that differ after save and load", impact="low", **_TAGS,
    explanation="The model's weights are written in the cache's format (safetensors) and read back; "
                "every tensor must come back bitwise identical, with its dtype and shape.",
    mitigation="Do not cast or re-layout weights on save; check the safetensors version.",
)

DEVICE_PARITY = CheckInfo(
    suite="numerical", check="cpu_vs_accelerator", title="CPU against the accelerator (CUDA or MPS)",
    metric="largest logit deviation, CPU vs accelerator", impact="moderate", **_TAGS,
    explanation="The same weights run on the CPU and on the audit's accelerator, on the same inputs; "
                "the finding is the largest logit deviation and the share of predictions that differ. "
                "Only measured when an accelerator is present.",
    mitigation="Pin the accelerator's math mode (torch.backends.cuda.matmul.allow_tf32 = False) for "
               "audits and serving, or accept the measured deviation explicitly in the policy.",
)

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


def eager_swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


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
def half_parity(model: nn.Module, x: torch.Tensor, dtype: str = "float16") -> dict:
    """float32 against float16 (a half copy of the model) or bfloat16 (autocast): flips per
    example, largest logit deviation, and the FFN headroom to the float16 maximum."""
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
    return {"flips": flips, "max_logit_deviation": deviation, "finite": finite,
            "ffn_absmax": absmax, "headroom": FP16_MAX / absmax if absmax > 0 else float("inf")}


def state_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str | None]:
    """Largest absolute difference between two state dicts, and the tensor where it is."""
    worst, where = 0.0, None
    for name in a:
        if name not in b or a[name].shape != b[name].shape or a[name].dtype != b[name].dtype:
            return float("inf"), name
        if a[name].is_floating_point():
            diff = float((a[name].double() - b[name].double()).abs().max()) if a[name].numel() else 0.0
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
    return {"device": device.type, "max_logit_deviation": float((on_device - on_cpu).abs().max()),
            "flips": (on_device.argmax(1) != on_cpu.argmax(1)).numpy()}
