"""The deployment-precision suite's checks: how outlier-heavy each model's FFN hidden activation
is (and how it grew over training), what post-training int8 and float8 quantisation cost it, and
whether the SwiGLU candidate loses more, or carries larger outliers, than each baseline.
The measurements are in `measure.deployment`; the quantisation schemes in `methods.quantisation`."""

from __future__ import annotations

from ..verdicts.conditions import Ceiling, NoWorseThanBaseline, Status, floored, inconclusive_when, rejudged
from ..verdicts.risk import CheckInfo

_QUANTISE_WITH_CARE = (
    "Quantise per channel (or per token) rather than per tensor, keep outlier channels in higher "
    "precision (LLM.int8()'s mixed-precision decomposition), smooth the activation into the weights "
    "before quantising (SmoothQuant; Smooth-SwiGLU's per-channel scaling of the FFN product, "
    "Fishman et al. 2024), or keep the FFN's down projection in bfloat16; measure again after.")


def _non_finite(status, value, ci, facts, policy):
    if facts.get("non_finite"):
        return Status.FAIL, "the quantised model's logits contain NaN or infinity"
    return None


NON_FINITE_FAILS = rejudged("non-finite quantised outputs", ("non_finite",), _non_finite)


def _nothing_quantised(facts: dict, policy: dict) -> str | None:
    share = facts["weight_share"]
    if share is None:
        return "the share of the model's weights the scheme quantised was not measured"
    if share != 0.0:
        return None
    return ("the scheme left every weight of the model as it was (it covers nn.Linear layers, and "
            "convolutions for float8; this model's layers are of other types, or their values already sat on "
            "its grid), so the accuracy after quantisation is the float32 model's and says nothing about a "
            "low-precision deployment")


# A model none of whose layers the scheme covers loses nothing to it: no PASS on that (a model
# partly covered keeps its verdict; the suite's sentence says how much was quantised).
NOTHING_QUANTISED_CAP = inconclusive_when("nothing quantised", ("weight_share",), _nothing_quantised)
# Outliers are what makes a model hard to quantise, not a loss in themselves: the quantised-accuracy
# findings measure the loss and may FAIL; the outlier comparison says where to look.
OUTLIERS_INDICATE = floored("outliers indicate, accuracy decides", (), Status.WARN, lambda facts, policy: (
    "larger outliers make the candidate harder to quantise; whether they cost accuracy is the "
    "quantised_accuracy_vs_baseline findings' verdict, so this one is at worst a WARN"))

ACTIVATION_OUTLIERS = CheckInfo(
    suite="deployment", check="ffn_activation_outliers",
    title="FFN activation outliers (the hidden product a quantiser must represent)",
    metric="largest |FFN hidden activation| / median non-zero |activation| on test inputs, worst layer; "
           "geometric mean over seeds",
    rmf=("MEASURE 2.5", "MEASURE 2.3"), characteristic="valid_reliable", impact="moderate",
    explanation="The FFN's hidden activation (silu(gate(x)) * up(x) in SwiGLU, the input of the down "
                "projection) is where low-precision deployment breaks: one large value sets the scale "
                "of a per-tensor int8 or float8 grid and the typical values lose their resolution "
                "(LLM.int8(), Dettmers et al. 2022; SwiGLU's quadratic product amplifies outliers late "
                "in training, Fishman et al. 2024). torch's dynamic int8 rounds an activation to 127 "
                "steps over [min, max] (x86's reduced range), about 2 absmax / 127 each for values of "
                "both signs, so above a ratio of about 127 the median activation rounds to zero. The "
                "interval covers the seeds and the test inputs drawn (a sample's largest value grows "
                "with the sample). The details give each layer's "
                "largest value, median, 99.9th percentile, kurtosis and outlier channel, and the ratio "
                "over the training steps the record holds (the plot), naming the layer and the steps "
                "where it grew most. A WARN says the model needs care when quantised; the quantised "
                "accuracy findings say whether it lost accuracy.",
    mitigation=_QUANTISE_WITH_CARE,
    condition=Ceiling("max_ffn_outlier_ratio", "largest / median |FFN activation|"),
)

QUANTISED_ACCURACY = CheckInfo(
    suite="deployment", check="quantised_accuracy",
    title="Accuracy after post-training quantisation (int8 dynamic; float8 e4m3)",
    metric="float32 accuracy minus quantised accuracy on the same test inputs, paired over seeds and inputs",
    rmf=("MEASURE 2.3", "MEASURE 2.5"), characteristic="valid_reliable", impact="high",
    explanation="Each trained model is quantised as it would be shipped and evaluated on the same test "
                "inputs as its float32 self, 32 inputs per call (a dynamic scale is per call): int8 "
                "dynamic quantisation of the linear layers (torch.ao.quantization, on the CPU, as a "
                "CPU server runs it; convolutions stay float32), and float8 e4m3 casts of the weights "
                "and the FFN activations (simulated on every device: each value rounded through "
                "float8 with one scale per tensor). The finding is the accuracy lost; the details give "
                "the prediction flip rate and the robust accuracy before and after quantisation on the "
                "adversarial suite's Linf worst case, crafted on the float32 model (per input, the "
                "example of the first attack that broke it, PGD's where none did; the quantised model "
                "has no gradient: these are the examples an attacker holding the float weights brings; "
                "transferred, they make the quantised figure an upper bound), each with its interval.",
    mitigation=_QUANTISE_WITH_CARE,
    condition=Ceiling("max_int8_accuracy_drop", "accuracy lost to quantisation", breached=Status.FAIL,
                      by_aspect=(("fp8", "max_fp8_accuracy_drop"),)),
    modifiers=(NON_FINITE_FAILS, NOTHING_QUANTISED_CAP),
)

QUANTISED_COMPARISON = CheckInfo(
    suite="deployment", check="quantised_accuracy_vs_baseline",
    title="Accuracy lost to quantisation, SwiGLU candidate vs baseline",
    metric="difference of (quantised - float32) accuracy, candidate - baseline",
    rmf=("MEASURE 2.3", "MEASURE 2.5"), characteristic="valid_reliable", impact="moderate",
    explanation="Does the SwiGLU candidate lose more accuracy than the baseline when both are quantised "
                "the same way? Per test input, quantised minus float32 correctness, paired across "
                "seeds and inputs.",
    mitigation=_QUANTISE_WITH_CARE + " If the candidate alone loses accuracy, ship it in higher "
               "precision or keep the baseline where low precision is required.",
    condition=NoWorseThanBaseline("max_quantised_drop_gap"),
    modifiers=(NOTHING_QUANTISED_CAP,),  # on the smaller share of the two models
)

OUTLIER_COMPARISON = CheckInfo(
    suite="deployment", check="ffn_outliers_vs_baseline",
    title="FFN activation outliers, SwiGLU candidate vs baseline",
    metric="difference of log10(each input's largest |FFN hidden activation| / the layer's median), "
           "candidate - baseline",
    rmf=("MEASURE 2.5",), characteristic="valid_reliable", impact="low",
    explanation="Does the SwiGLU candidate carry larger activation outliers than the baseline, relative "
                "to its own typical activation? Per test input, log10 of its largest hidden value over "
                "the layer's median |value| (the worst layer), compared over seeds and inputs; 0.3 is a "
                "factor of two. Larger outliers make the candidate harder to quantise, whether or not "
                "this audit's quantisation already costs it accuracy: a candidate beyond the tolerance "
                "gets a WARN, never a FAIL (the quantised-accuracy comparisons judge the loss).",
    mitigation=_QUANTISE_WITH_CARE,
    condition=NoWorseThanBaseline("max_outlier_log_ratio_gap", higher_is_better=False),
    modifiers=(OUTLIERS_INDICATE,),
)
