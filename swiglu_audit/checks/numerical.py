"""The numerical suite's checks: the SwiGLU op against a float64 reference (property-based),
half-precision parity and headroom, determinism, golden outputs, checkpoint round-trips and
device parity. The measuring functions are in `methods.numerical`."""

from __future__ import annotations

from ..verdicts.conditions import DecisionTable, Rule, Status, always, judge_interval
from ..verdicts.risk import CheckInfo


def _passed(facts: dict, policy: dict) -> bool:
    return bool(facts["passed"])


def _fixed(text: str):
    return lambda facts, policy: text


def _flip_key(facts: dict) -> str:
    return "max_fp16_flip_rate" if facts["dtype"] == "float16" else "max_bf16_flip_rate"


def _flip_verdict(facts: dict, policy: dict) -> Status:
    flips = facts["flips"]
    return judge_interval(flips["value"], (flips["ci_low"], flips["ci_high"]), policy[_flip_key(facts)], False, Status.FAIL)


def _parity_problems(facts: dict, policy: dict) -> list[str]:
    """What fails half-precision parity outright: overflow, a flip rate whose whole interval is
    above its limit, too little float16 headroom."""
    dtype, flips, key = facts["dtype"], facts["flips"], _flip_key(facts)
    problems = []
    if not facts["finite"]:
        problems.append(f"{dtype} logits contain NaN or infinity (overflow)")
    if _flip_verdict(facts, policy) is Status.FAIL:
        problems.append(f"{dtype} flip rate {flips['value']:.4f} [{flips['ci_low']:.4f}, {flips['ci_high']:.4f}] exceeds "
                        f"{key} = {policy[key]} over its whole interval")
    if dtype == "float16" and facts["headroom"] is not None and facts["headroom"] < policy["min_fp16_headroom"]:
        problems.append(f"largest FFN activation {facts['ffn_absmax']:.4g} leaves headroom "
                        f"{facts['headroom']:.3g}x to the float16 maximum {facts['fp16_max']:.0f}, below "
                        f"min_fp16_headroom = {policy['min_fp16_headroom']}")
    return problems


_NO_FFN_HEADROOM = ("float16 headroom not measured: no FFN found in the model, or none called (the audit looks "
                    "for modules with up_proj and down_proj, or a linear layer marked `swiglu_audit_ffn = True`: "
                    "mark the down projection, whose input is the FFN's hidden activation)")


def _parity_doubts(facts: dict, policy: dict) -> list[str]:
    """What leaves half-precision parity inconclusive: a flip-rate interval across its limit, a
    float16 headroom that could not be measured."""
    flips, key = facts["flips"], _flip_key(facts)
    doubts = []
    if _flip_verdict(facts, policy) is Status.WARN:
        doubts.append(f"{facts['dtype']} flip rate {flips['value']:.4f}, interval [{flips['ci_low']:.4f}, "
                      f"{flips['ci_high']:.4f}], reaches across {key} = {policy[key]}; more test examples or seeds "
                      "would decide it")
    if facts["dtype"] == "float16" and facts["headroom"] is None:
        doubts.append(_NO_FFN_HEADROOM)
    return doubts


def _headroom_words(facts: dict, policy: dict) -> str:
    if facts["headroom"] is None:
        return "FFN headroom not measured (no FFN found)"
    return (f"largest FFN activation {facts['ffn_absmax']:.4g} leaves {facts['headroom']:.3g}x headroom to float16's "
            f"maximum (min_fp16_headroom = {policy['min_fp16_headroom']})")


def _parity_pass_words(facts: dict, policy: dict) -> str:
    flips, key = facts["flips"], _flip_key(facts)
    return (f"{facts['dtype']} flip rate {flips['value']:.4f} (interval [{flips['ci_low']:.4f}, {flips['ci_high']:.4f}]) is within "
            f"{key} = {policy[key]}; largest logit deviation {facts['max_logit_deviation']:.3g}; "
            + _headroom_words(facts, policy))


def _determinism_key(facts: dict) -> str:
    return "max_nondeterminism" if facts["device"] == "cpu" else "max_nondeterminism_accelerator"


def _determinism_words(same: bool):
    def words(facts: dict, policy: dict) -> str:
        key = _determinism_key(facts)
        if not facts["trained"]:  # pretrained: no weights were trained twice, only the forward pass repeated
            return (f"two forward passes of '{facts['model']}' (pretrained weights: not trained, so only its "
                    f"outputs were compared) differ by {facts['output_diff']:.3g}, "
                    f"{'within' if same else 'above'} {key} = {policy[key]}")
        head = f"two trainings of '{facts['model']}' from seed {facts['seed']}"
        return (f"{head} differ by at most {facts['worst']:.3g} in weights and outputs, within {key} = {policy[key]}"
                if same else
                f"{head} differ: weight '{facts['weight_where']}' by {facts['weight_diff']:.3g}, outputs by "
                f"{facts['output_diff']:.3g}; above {key} = {policy[key]}")
    return words


def _golden_tolerance(facts: dict, policy: dict) -> float:
    return policy[f"golden_tolerance_{facts['dtype']}"]


def _device_flip_verdict(facts: dict, policy: dict) -> Status:
    """The flip rate judged on its interval (DESIGN.md section 8), as PRECISION_PARITY's."""
    flips = facts["flips"]
    return judge_interval(flips["value"], (flips["ci_low"], flips["ci_high"]), policy["max_device_flip_rate"], False,
                          Status.FAIL)


def _device_deviation_ok(facts: dict, policy: dict) -> bool:  # the largest deviation over all inputs: exact
    return facts["deviation"] <= policy["max_device_logit_deviation"]


def _device_words(facts: dict, policy: dict) -> str:
    flips = facts["flips"]
    return (f"model '{facts['model']}' on {facts['device']} vs CPU: largest logit deviation {facts['deviation']:.3g} "
            f"(max_device_logit_deviation = {policy['max_device_logit_deviation']}), flip rate "
            f"{flips['value']:.4f}, interval [{flips['ci_low']:.4f}, {flips['ci_high']:.4f}] "
            f"(max_device_flip_rate = {policy['max_device_flip_rate']})")


def _device_inconclusive_words(facts: dict, policy: dict) -> str:
    return (_device_words(facts, policy) + ": inconclusive, the flip rate's interval reaches across "
            "max_device_flip_rate; more test examples or seeds would decide it")


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
    condition=DecisionTable(
        threshold=lambda facts, policy: f"flip rate <= {_flip_key(facts)} = {policy[_flip_key(facts)]}" + (
            f"; headroom >= min_fp16_headroom = {policy['min_fp16_headroom']}" if facts["dtype"] == "float16" else ""),
        rules=(
            Rule(Status.FAIL, lambda facts, policy: bool(_parity_problems(facts, policy)),
                 lambda facts, policy: f"model '{facts['model']}': " + "; ".join(_parity_problems(facts, policy))),
            Rule(Status.WARN, lambda facts, policy: bool(_parity_doubts(facts, policy)),
                 lambda facts, policy: "inconclusive: " + "; ".join(_parity_doubts(facts, policy))),
            Rule(Status.PASS, always, _parity_pass_words))),
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
    condition=DecisionTable(
        threshold=_fixed("|impl - reference| within the dtype's tolerance (ratio <= 1) and finite wherever the "
                         "reference is representable"),
        rules=(
            Rule(Status.PASS, _passed, lambda facts, policy: (
                f"implementation '{facts['impl']}' agrees with the float64 reference on {facts['examples']} "
                f"generated cases; worst error {facts['worst_ratio']:.3f} of the dtype's tolerance (limit 1)")),
            Rule(Status.FAIL, always, lambda facts, policy: (
                f"implementation '{facts['impl']}' disagrees with the float64 reference in "
                f"{facts['minimal_failure']['dtype']}, shape {facts['minimal_failure']['shape']}: "
                f"{facts['minimal_failure']['where']} (minimal example shrunk by hypothesis in the details)")))),
)

GRADCHECK = CheckInfo(
    suite="numerical", check="swiglu_gradcheck", title="SwiGLU gradients by finite differences (float64)",
    metric="gradcheck passed", impact="moderate", **_TAGS,
    explanation="torch.autograd.gradcheck compares the analytic gradient of the implementation with "
                "finite differences in float64.",
    mitigation="Fix the implementation's backward, or let autograd derive it.",
    condition=DecisionTable(
        threshold=_fixed("analytic and finite-difference gradients agree (atol 1e-5)"),
        rules=(Rule(Status.PASS, _passed, lambda facts, policy: f"gradcheck passed for '{facts['impl']}' in float64"),
               Rule(Status.FAIL, always, lambda facts, policy: (
                   f"gradcheck failed for '{facts['impl']}' in float64: {facts['error']}")))),
)

DETERMINISM = CheckInfo(
    suite="numerical", check="training_determinism", title="Same seed, same weights and outputs",
    metric="largest weight or output difference between two seeded trainings (a pretrained model: between "
           "two forward passes)", impact="moderate", **_TAGS,
    explanation="The model is trained twice, briefly, from the same seed; weights and outputs must be "
                "identical (bitwise on CPU). Where the device cannot be bitwise deterministic the "
                "spread is measured and bounded by the policy. A model loaded from weights is not "
                "trained: only its forward pass is repeated, and the finding says so.",
    mitigation="Set seeds for every source of randomness, use deterministic algorithms "
               "(torch.use_deterministic_algorithms), and pin library versions.",
    # bitwise on CPU (max_nondeterminism, 0 by default); a bounded spread on an accelerator
    condition=DecisionTable(
        threshold=lambda facts, policy: (f"difference <= {_determinism_key(facts)} = {policy[_determinism_key(facts)]} "
                                         f"({facts['device']})"),
        rules=(Rule(Status.PASS, lambda facts, policy: facts["worst"] <= policy[_determinism_key(facts)],
                    _determinism_words(same=True)),
               Rule(Status.FAIL, always, _determinism_words(same=False)))),
)

GOLDEN = CheckInfo(
    suite="numerical", check="golden_outputs", title="Logits against stored golden outputs",
    metric="largest logit deviation from the golden file", impact="moderate", **_TAGS,
    explanation="Logits of the model on a fixed probe set are compared with the golden file stored "
                "for this platform and dtype by an earlier run. A deviation beyond the tolerance "
                "means the model or the numerics underneath it changed.",
    mitigation="If the change is intended (new weights, new library versions), review it and "
               "regenerate the golden files with --swiglu-audit-update-golden; if not, bisect it.",
    condition=DecisionTable(
        threshold=lambda facts, policy: (f"largest deviation <= golden_tolerance_{facts['dtype']} = "
                                         f"{_golden_tolerance(facts, policy)}"),
        rules=(
            # a golden file written (or rewritten) now has nothing to compare with yet
            Rule(Status.WARN, lambda facts, policy: facts["action"] != "compared",
                 lambda facts, policy: f"model '{facts['model']}' ({facts['dtype']}): {facts['note']}"),
            Rule(Status.PASS, lambda facts, policy: facts["max_deviation"] <= _golden_tolerance(facts, policy),
                 lambda facts, policy: (
                     f"model '{facts['model']}' ({facts['dtype']}) logits deviate from the golden file by at most "
                     f"{facts['max_deviation']:.3g}, within golden_tolerance_{facts['dtype']} = {_golden_tolerance(facts, policy)}")),
            Rule(Status.FAIL, always, lambda facts, policy: (
                f"model '{facts['model']}' ({facts['dtype']}) logits deviate from the golden file by "
                f"{facts['max_deviation']:.3g} at {facts['where']}, above golden_tolerance_{facts['dtype']} = "
                f"{_golden_tolerance(facts, policy)}")))),
)

ROUNDTRIP = CheckInfo(
    suite="numerical", check="checkpoint_roundtrip", title="Checkpoint round-trip through the cache",
    metric="tensors that differ after save and load", impact="low", **_TAGS,
    explanation="The model's weights are written in the cache's format (safetensors) and read back; "
                "every tensor must come back bitwise identical, with its dtype and shape.",
    mitigation="Do not cast or re-layout weights on save; check the safetensors version.",
    condition=DecisionTable(
        threshold=_fixed("every tensor bitwise identical, same dtype and shape"),
        rules=(Rule(Status.PASS, lambda facts, policy: not facts["differing"], lambda facts, policy: (
                   f"all {facts['n_tensors']} tensors of '{facts['model']}' come back bitwise identical")),
               Rule(Status.FAIL, always, lambda facts, policy: (
                   f"{len(facts['differing'])} tensors of '{facts['model']}' change on save and load, e.g. "
                   f"'{facts['where']}' by {facts['diff']:.3g}")))),
)

DEVICE_PARITY = CheckInfo(
    suite="numerical", check="cpu_vs_accelerator", title="CPU against the accelerator (CUDA or MPS)",
    metric="largest logit deviation, CPU vs accelerator", impact="moderate", **_TAGS,
    explanation="The same weights run on the CPU and on the audit's accelerator, on the same inputs; "
                "the finding is the largest logit deviation and the share of predictions that differ. "
                "Only measured when an accelerator is present.",
    mitigation="Pin the accelerator's math mode (torch.backends.cuda.matmul.allow_tf32 = False) for "
               "audits and serving, or accept the measured deviation explicitly in the policy.",
    condition=DecisionTable(
        threshold=lambda facts, policy: (
            f"deviation <= max_device_logit_deviation = {policy['max_device_logit_deviation']}; "
            f"flip rate <= max_device_flip_rate = {policy['max_device_flip_rate']} (the whole interval)"),
        rules=(Rule(Status.FAIL, lambda facts, policy: (not _device_deviation_ok(facts, policy)
                                                        or _device_flip_verdict(facts, policy) is Status.FAIL),
                    _device_words),
               Rule(Status.WARN, lambda facts, policy: _device_flip_verdict(facts, policy) is Status.WARN,
                    _device_inconclusive_words),
               Rule(Status.PASS, always, _device_words))),
)
