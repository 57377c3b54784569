"""Deployment-precision suite: the FFN's activation outliers per model (now, and over training),
its accuracy after int8 dynamic quantisation and float8 casts, and whether the SwiGLU candidate
loses more, or carries larger outliers, than each baseline."""

import math

import numpy as np
import pytest

from swiglu_audit.checks.deployment import ACTIVATION_OUTLIERS, OUTLIER_COMPARISON, QUANTISED_ACCURACY, QUANTISED_COMPARISON
from swiglu_audit.measure import deployment as measure
from swiglu_audit.methods.quantisation import SCHEMES, SERVING_BATCH
from swiglu_audit.training.activations import FFN_MARKER
from swiglu_audit.verdicts.risk import judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import replicate_estimate

_NO_FFN = ("no FFN found in '{model}': the audit looks for modules with up_proj and down_proj (the LLaMA "
           "naming) or for linear layers marked `{marker} = True` (mark the down projection, whose input is "
           "the FFN's hidden activation); its outliers are not measured")


def _outliers_or_skip(audit, model) -> dict:
    result = measure.outliers(audit, model)
    if not result["layers"]:
        pytest.skip(_NO_FFN.format(model=model, marker=FFN_MARKER))
    return result


@pytest.mark.swiglu_audit_check(ACTIVATION_OUTLIERS)
def test_ffn_activation_outliers(audit, audit_model, record_finding):
    result = _outliers_or_skip(audit, audit_model)
    stats = audit.statistics
    worst_layer = max(result["per_seed"][0], key=lambda n: result["per_seed"][0][n]["ratio_to_median"])
    # the worst layer's ratio per seed is the largest per-input peak ratio; its interval covers the
    # seeds and the inputs drawn (a sample's largest value grows with the sample)
    log_peak = result["log_peak"]
    est = replicate_estimate(log_peak.max(1), measure.peak_ratio_replicates(log_peak, stats.n_boot, stats.seed),
                             log_peak.shape[1], stats.level)
    value, ci = 10 ** est.value, (10 ** est.ci_low, 10 ** est.ci_high)
    grown = measure.growth(result["curve"])
    details = {"layers": {layer: {k: _mean(result["per_seed"], layer, k) for k in
                                  ("absmax", "median", "p999", "ratio_to_median", "ratio_to_p999", "kurtosis",
                                   "top_channel_ratio")} | {"top_channel_first_seed": result["per_seed"][0][layer]["top_channel"]}
                          for layer in result["layers"]},
               "worst_layer_first_seed": worst_layer, "n_inputs": audit.config.numerical.n_examples}
    what = (f"largest / median |FFN hidden activation| on {log_peak.shape[1]} test inputs (worst layer; first seed: "
            f"{worst_layer})")
    if grown:
        details["growth"] = {k: v for k, v in grown.items() if k != "curve"}
        details["growth_curve"] = [{"step": p["step"], "value": math.log10(max(p["ratio"], 1e-30))} for p in grown["curve"]]
        a, b = grown["grew_most_between"]
        what += (f"; over training, {grown['layer']}'s ratio went from {grown['first_ratio']:.3g} to "
                 f"{grown['final_ratio']:.3g} and grew most ({grown['grew_most_factor']:.3g}x) between steps {a} and {b}")
    else:
        details["growth"] = ("not recorded: the model was loaded from weights, or its training record holds no "
                             "outlier points (a checkpoint trained before they were recorded)")
    record_finding(judged_finding(ACTIVATION_OUTLIERS, [audit_model], value, audit.config.policy, what,
                                  ci=ci, ci_level=est.level, details=details))


def _mean(per_seed: list[dict], layer: str, key: str) -> float:
    return float(np.mean([s[layer][key] for s in per_seed]))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.swiglu_audit_check(QUANTISED_ACCURACY)
def test_quantised_accuracy(audit, audit_model, scheme, record_finding):
    stats = audit.statistics
    result = measure.quantised(audit, audit_model, scheme)
    drop = stats.difference(result["float_correct"], result["quantised_correct"])  # float - quantised, seed k with itself
    details = {"scheme": result["how"], "serving_batch": SERVING_BATCH,
               "float_accuracy": float(result["float_correct"].mean()),
               "quantised_accuracy": stats.mean(result["quantised_correct"]).to_dict(),
               "accuracy_drop": drop.to_dict(), "flip_rate": stats.mean(result["flips"]).to_dict(),
               "non_finite": bool(result.get("non_finite", False)),
               "weight_share_quantised": result.get("weight_share")}
    if len(result["robust_float"]):
        robust = stats.difference(result["robust_quantised"], result["robust_float"])
        details["robust"] = {"on": "the adversarial suite's Linf worst-case examples, crafted on the float32 model "
                                   "(per input, the first attack's that broke it; PGD's where none did)",
                             "note": "transferred from the float32 model, so the quantised figure is an upper "
                                     "bound: a rise means the examples transfer imperfectly, not that the "
                                     "quantised model is more robust",
                             "float": stats.mean(result["robust_float"]).to_dict(),
                             "quantised": stats.mean(result["robust_quantised"]).to_dict(),
                             "change": robust.to_dict()}
    else:
        details["robust"] = {"not_measured": result.get("robust_error", "no adversarial examples")}
    record_finding(judged_finding(
        QUANTISED_ACCURACY, [audit_model], drop.value, audit.config.policy,
        f"accuracy lost to {scheme} ({details['float_accuracy']:.4f} float32, "
        f"{details['quantised_accuracy']['value']:.4f} {scheme}; flip rate {details['flip_rate']['value']:.4f}"
        f"{_share_words(details['weight_share_quantised'])})",
        ci=(drop.ci_low, drop.ci_high), df=drop.df, ci_level=drop.level, details=details, aspect=scheme,
        facts={"non_finite": details["non_finite"], "weight_share": details["weight_share_quantised"]}))


def _share_words(share: float | None) -> str:
    """Where the scheme left some of the weights float32 (layers of types it does not cover), how
    much it quantised: the finding covers that much of the model."""
    if share is None or share >= 1.0 or share == 0.0:  # at 0 the judge says it (checks.deployment)
        return ""
    shown = "over 99.9%" if share > 0.999 else f"{share:.1%}"
    return f"; {shown} of the model's weight elements quantised, the rest left float32"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.swiglu_audit_check(QUANTISED_COMPARISON)
def test_quantised_accuracy_vs_baseline(audit, audit_pair, scheme, record_finding):
    def compare(session):
        results = [measure.quantised(session, m, scheme) for m in audit_pair]
        return session.statistics.compare_changes(*(r[k] for r in results for k in ("float_correct", "quantised_correct")))
    def facts(session):
        shares = [measure.quantised(session, m, scheme).get("weight_share") for m in audit_pair]
        return {"weight_share": None if None in shares else min(shares)}
    record_finding(judged_comparison(audit, QUANTISED_COMPARISON, audit_pair,
                                     f"accuracy change under {scheme} (quantised - float32)", compare,
                                     details={"scheme": scheme}, aspect=scheme, facts=facts))


@pytest.mark.swiglu_audit_check(OUTLIER_COMPARISON)
def test_ffn_outliers_vs_baseline(audit, audit_pair, record_finding):
    for model in audit_pair:
        _outliers_or_skip(audit, model)

    def compare(session):
        return session.statistics.compare(*(measure.outliers(session, m)["log_peak"] for m in audit_pair))
    record_finding(judged_comparison(audit, OUTLIER_COMPARISON, audit_pair,
                                     "log10 of each input's largest FFN activation over the layer's median", compare))
