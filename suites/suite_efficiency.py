"""Efficiency suite: does the candidate reach at least the baseline's accuracy at matched
parameters and the same training budget (the reason teams adopt SwiGLU)?"""

import pytest

from swiglu_audit import measurements as measure
from swiglu_audit.checks.efficiency import CLEAN_ACCURACY_COMPARISON, parameter_mismatch
from swiglu_audit.risk import Status, judge_drop, make_finding
from swiglu_audit.stats import paired_comparison


@pytest.mark.swiglu_audit_check(CLEAN_ACCURACY_COMPARISON)
def test_clean_accuracy_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cmp = paired_comparison(measure.clean_correct(audit, candidate), measure.clean_correct(audit, baseline),
                            policy["confidence_level"], policy["alpha"])
    status, reason = judge_drop(cmp, policy["max_clean_accuracy_drop"], "clean test accuracy",
                                "max_clean_accuracy_drop")
    n_cand, n_base = measure.n_parameters(audit, candidate), measure.n_parameters(audit, baseline)
    mismatch = parameter_mismatch(n_cand, n_base)
    if mismatch > policy["max_param_mismatch"] and status is Status.PASS:
        status = Status.WARN
        reason += (f"; but parameter counts differ by {mismatch:.1%} ({n_cand} vs {n_base}), more than "
                   f"max_param_mismatch = {policy['max_param_mismatch']}, so this is not a matched comparison")
    record_finding(make_finding(
        CLEAN_ACCURACY_COMPARISON, [candidate, baseline], status, reason,
        threshold=f"candidate accuracy not lower by more than max_clean_accuracy_drop = "
                  f"{policy['max_clean_accuracy_drop']} (significant at alpha = {policy['alpha']})",
        value=cmp.difference, ci=(cmp.ci_low, cmp.ci_high), ci_level=cmp.level,
        details={"comparison": cmp.to_dict(), "n_parameters": {candidate: n_cand, baseline: n_base},
                 "parameter_mismatch": mismatch, "training_steps": audit.zoo.models(candidate)[0].record.get("steps")}))
