"""Numerical-regression suite: float16 parity and overflow headroom of each trained model."""

import pytest

from swiglu_audit import measurements as measure
from swiglu_audit.checks.numerical import FP16_MAX, FP16_PARITY
from swiglu_audit.risk import Status, make_finding
from swiglu_audit.stats import bootstrap_mean


@pytest.mark.swiglu_audit_check(FP16_PARITY)
def test_fp16_parity(audit, audit_model, record_finding):
    policy = audit.config.policy
    result = measure.half_precision(audit, audit_model)
    flips = bootstrap_mean(result["flips"], policy["confidence_level"])
    max_flip, min_headroom = policy["max_fp16_flip_rate"], policy["min_fp16_headroom"]
    problems = []
    if not result["finite"]:
        problems.append("float16 logits contain NaN or infinity (overflow)")
    if flips.value > max_flip:
        problems.append(f"flip rate {flips.value:.4f} exceeds max_fp16_flip_rate = {max_flip}")
    if result["headroom"] < min_headroom:
        problems.append(f"largest FFN activation {result['ffn_absmax']:.4g} leaves headroom "
                        f"{result['headroom']:.3g}x to the float16 maximum {FP16_MAX:.0f}, below "
                        f"min_fp16_headroom = {min_headroom}")
    if problems:
        status, reason = Status.FAIL, "; ".join(problems)
    else:
        status, reason = Status.PASS, (
            f"flip rate {flips.value:.4f} is within max_fp16_flip_rate = {max_flip} and the largest "
            f"FFN activation {result['ffn_absmax']:.4g} leaves {result['headroom']:.3g}x headroom "
            f"(min_fp16_headroom = {min_headroom})")
    record_finding(make_finding(
        FP16_PARITY, [audit_model], status, reason,
        threshold=f"flip rate <= max_fp16_flip_rate = {max_flip}; headroom >= min_fp16_headroom = {min_headroom}",
        value=flips.value, ci=(flips.ci_low, flips.ci_high), ci_level=flips.level,
        details={"max_logit_deviation": result["max_logit_deviation"], "finite": result["finite"],
                 "ffn_absmax": result["ffn_absmax"], "headroom": result["headroom"],
                 "flip_rate": flips.to_dict()}))
