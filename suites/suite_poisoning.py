"""Data-poisoning suite: label-flip degradation per model, and candidate vs each baseline."""

import pytest

from swiglu_audit import measurements as measure
from swiglu_audit.checks.poisoning import LABEL_FLIP, LABEL_FLIP_COMPARISON
from swiglu_audit.risk import Status, comparison_finding, judge_drop, make_finding
from swiglu_audit.stats import paired_comparison


@pytest.mark.swiglu_audit_check(LABEL_FLIP)
def test_label_flip_degradation(audit, audit_model, record_finding):
    policy = audit.config.policy
    result = measure.label_flip(audit, audit_model)
    # poisoned vs clean model of the same architecture, on the same test examples
    cmp = paired_comparison(result["poisoned"], result["clean"], policy["confidence_level"], policy["alpha"])
    status, reason = judge_drop(cmp, policy["max_label_flip_accuracy_drop"],
                                f"clean accuracy after flipping {result['rate']:.0%} of training labels",
                                "max_label_flip_accuracy_drop")
    status = Status.WARN if status is Status.FAIL else status  # an inherent weakness, not a regression
    record_finding(make_finding(
        LABEL_FLIP, [audit_model], status, reason,
        threshold=f"accuracy lost <= max_label_flip_accuracy_drop = {policy['max_label_flip_accuracy_drop']}",
        value=cmp.difference, ci=(cmp.ci_low, cmp.ci_high), ci_level=cmp.level,
        details={"flip_rate": result["rate"], "n_flipped": result["n_flipped"],
                 "comparison": cmp.to_dict()}))


@pytest.mark.swiglu_audit_check(LABEL_FLIP_COMPARISON)
def test_label_flip_degradation_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cand, base = measure.label_flip(audit, candidate), measure.label_flip(audit, baseline)
    # per-example accuracy change (poisoned - clean) of each architecture, compared paired
    cmp = paired_comparison(cand["poisoned"].astype(float) - cand["clean"],
                            base["poisoned"].astype(float) - base["clean"],
                            policy["confidence_level"], policy["alpha"])
    record_finding(comparison_finding(LABEL_FLIP_COMPARISON, audit_pair, cmp, policy, "max_label_flip_drop_excess",
                                      "accuracy change under label flipping", details={"flip_rate": cand["rate"]}))
