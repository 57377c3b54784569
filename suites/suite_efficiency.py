"""Efficiency suite: does the candidate reach at least the baseline's accuracy at matched
parameters and the same training budget (the reason teams adopt SwiGLU)?"""

import pytest

from swiglu_audit.checks.efficiency import CLEAN_ACCURACY_COMPARISON, parameter_mismatch
from swiglu_audit.measure.adversarial import clean_correct
from swiglu_audit.measure.numerical import n_parameters
from swiglu_audit.risk import Status, comparison_finding, with_status
from swiglu_audit.stats import paired_comparison


@pytest.mark.swiglu_audit_check(CLEAN_ACCURACY_COMPARISON)
def test_clean_accuracy_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cmp = paired_comparison(clean_correct(audit, candidate), clean_correct(audit, baseline),
                            policy["confidence_level"], policy["alpha"])
    n_cand, n_base = n_parameters(audit, candidate), n_parameters(audit, baseline)
    mismatch = parameter_mismatch(n_cand, n_base)
    finding = comparison_finding(
        CLEAN_ACCURACY_COMPARISON, [candidate, baseline], cmp, policy, "clean test accuracy",
        details={"n_parameters": {candidate: n_cand, baseline: n_base}, "parameter_mismatch": mismatch,
                 "training_steps": audit.zoo.models(candidate)[0].record.get("steps")})
    if mismatch > policy["max_param_mismatch"] and finding.status == Status.PASS.value:
        finding = with_status(finding, Status.WARN, (
            f"but parameter counts differ by {mismatch:.1%} ({n_cand} vs {n_base}), more than "
            f"max_param_mismatch = {policy['max_param_mismatch']}, so this is not a matched comparison"))
    record_finding(finding)
