"""OOD suite: far-OOD detection by maximum softmax probability, per model and candidate vs baseline."""

import pytest

from swiglu_audit import measurements as measure
from swiglu_audit.checks.ood import (FAR_OOD_DESCRIPTION, MSP_COMPARISON, MSP_FAR_OOD, auroc_estimate,
                                     compare_auroc, roc_points)
from swiglu_audit.risk import Status, comparison_finding, judge_floor, make_finding


@pytest.mark.swiglu_audit_check(MSP_FAR_OOD)
def test_msp_far_ood_auroc(audit, audit_model, record_finding):
    policy, ood = audit.config.policy, audit.config.ood
    scores = measure.far_ood(audit, audit_model)
    est = auroc_estimate(scores["in"], scores["out"], policy["confidence_level"], ood["bootstrap"])
    status, reason = judge_floor(est.value, policy["warn_below_ood_auroc"], Status.WARN,
                                 "MSP far-OOD AUROC", "warn_below_ood_auroc")
    record_finding(make_finding(
        MSP_FAR_OOD, [audit_model], status, reason,
        threshold=f"AUROC >= warn_below_ood_auroc = {policy['warn_below_ood_auroc']}",
        value=est.value, ci=(est.ci_low, est.ci_high), ci_level=est.level,
        details={"positive_class": "in-distribution (higher MSP = more in-distribution)",
                 "ood_set": FAR_OOD_DESCRIPTION, "n_in": int(scores["in"].shape[1]),
                 "n_out": int(scores["out"].shape[1]), "auroc": est.to_dict(),
                 "roc_first_seed": roc_points(scores["in"][0], scores["out"][0])}))


@pytest.mark.swiglu_audit_check(MSP_COMPARISON)
def test_msp_far_ood_auroc_vs_baseline(audit, audit_pair, record_finding):
    policy, ood = audit.config.policy, audit.config.ood
    candidate, baseline = audit_pair
    cmp = compare_auroc(measure.far_ood(audit, candidate), measure.far_ood(audit, baseline),
                        policy["confidence_level"], policy["alpha"], ood["bootstrap"])
    record_finding(comparison_finding(MSP_COMPARISON, audit_pair, cmp, policy, "max_ood_auroc_drop",
                                      "MSP far-OOD AUROC", details={"p_value_method": "paired bootstrap"}))
