"""Adversarial (evasion) suite: PGD robust accuracy per model, and candidate vs each baseline."""

import pytest

from swiglu_audit import measurements as measure
from swiglu_audit.checks.adversarial import PGD_COMPARISON, PGD_ROBUST_ACCURACY
from swiglu_audit.risk import Status, judge_drop, judge_floor, make_finding
from swiglu_audit.stats import bootstrap_mean, paired_comparison


@pytest.mark.swiglu_audit_check(PGD_ROBUST_ACCURACY)
def test_pgd_robust_accuracy(audit, audit_model, record_finding):
    policy, attack = audit.config.policy, audit.config.adversarial
    result = measure.pgd(audit, audit_model)
    robust = bootstrap_mean(result["robust"], policy["confidence_level"])
    clean = bootstrap_mean(result["clean"], policy["confidence_level"])
    status, reason = judge_floor(robust.value, policy["warn_below_robust_accuracy"], Status.WARN,
                                 f"PGD robust accuracy at eps={attack['eps']}",
                                 "warn_below_robust_accuracy")
    record_finding(make_finding(
        PGD_ROBUST_ACCURACY, [audit_model], status, reason,
        threshold=f"robust accuracy >= warn_below_robust_accuracy = {policy['warn_below_robust_accuracy']}",
        value=robust.value, ci=(robust.ci_low, robust.ci_high), ci_level=robust.level,
        details={"eps": attack["eps"], "steps": attack["steps"], "norm": "Linf",
                 "clean_accuracy": clean.to_dict(), "robust_accuracy": robust.to_dict(),
                 "cost": result["costs"]}))


@pytest.mark.swiglu_audit_check(PGD_COMPARISON)
def test_pgd_robust_accuracy_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cmp = paired_comparison(measure.pgd(audit, candidate)["robust"], measure.pgd(audit, baseline)["robust"],
                            policy["confidence_level"], policy["alpha"])
    status, reason = judge_drop(cmp, policy["max_robust_accuracy_drop"], "PGD robust accuracy",
                                "max_robust_accuracy_drop")
    record_finding(make_finding(
        PGD_COMPARISON, [candidate, baseline], status, reason,
        threshold=f"candidate not worse by more than max_robust_accuracy_drop = "
                  f"{policy['max_robust_accuracy_drop']} (significant at alpha = {policy['alpha']})",
        value=cmp.difference, ci=(cmp.ci_low, cmp.ci_high), ci_level=cmp.level,
        details={"comparison": cmp.to_dict()}))
