"""The numerical suite's checks: the SwiGLU op against a float64 reference (property-based),
half-precision parity and headroom, determinism, golden outputs, checkpoint round-trips and
device parity. The measuring functions are in `methods.numerical`."""

from __future__ import annotations

from ..risk import CheckInfo

_TAGS: dict = dict(rmf=("MEASURE 2.5", "MEASURE 4.3"), characteristic="valid_reliable")

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
