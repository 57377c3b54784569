"""Adversarial (evasion) suite: the attack ensemble's worst case per model, gradient-masking
sanity checks, and the SwiGLU candidate against each baseline (worst case and transfer)."""

import dataclasses

import numpy as np
import pytest

from swiglu_audit.checks.adversarial import SANITY, SANITY_CHECKS, TRANSFER, WORST_CASE, WORST_CASE_COMPARISON, sanity_verdict
from swiglu_audit.measure import adversarial as measure
from swiglu_audit.risk import Status, comparison_finding, judged_finding, make_finding
from swiglu_audit.stats import bootstrap_mean, paired_comparison


@pytest.mark.swiglu_audit_check(WORST_CASE)
def test_worst_case_robust_accuracy(audit, audit_model, record_finding):
    policy, cfg = audit.config.policy, audit.config.adversarial
    level = policy["confidence_level"]
    result = measure.adversarial(audit, audit_model)
    worst = bootstrap_mean(result["worst"], level)
    broken_by = {k: int(sum(b[k] for b in result["broken_by"])) for k in result["broken_by"][0]}
    record_finding(judged_finding(
        WORST_CASE, [audit_model], worst.value, policy,
        f"worst-case robust accuracy over {', '.join(cfg['attacks'])}",
        ci=(worst.ci_low, worst.ci_high), ci_level=level,
        details={
            "eps_linf": cfg["eps"], "eps_l2": cfg["eps_l2"], "steps": cfg["steps"],
            "threat_model": "union: an example is robust only if every attack (Linf and L2) failed",
            "clean_accuracy": bootstrap_mean(result["clean"], level).to_dict(),
            "per_attack": {a: bootstrap_mean(r, level).to_dict() for a, r in result["per_attack"].items()},
            "broken_by_first": broken_by,
            # per seed, per test example: the first attack that broke it, "clean" or "robust"
            "broken_by_example": result["broken_by_example"],
            "curve": [{"eps": eps, **bootstrap_mean(r, level).to_dict()} for eps, r in sorted(result["curve"].items())],
            "cost_per_seed": result["costs"],
        }))


@pytest.mark.parametrize("sanity", list(SANITY_CHECKS))
@pytest.mark.swiglu_audit_check(SANITY)
def test_evaluation_sanity(audit, audit_model, sanity, record_finding):
    policy, cfg = audit.config.policy, audit.config.adversarial
    result = dict(measure.adversarial(audit, audit_model), large_eps=cfg["large_eps"])
    passed, statistic, reason = sanity_verdict(sanity, result, policy)
    question, tolerance_key = SANITY_CHECKS[sanity]
    info = dataclasses.replace(SANITY, check=f"sanity_{sanity}", title=f"Sanity: {question}")
    record_finding(make_finding(
        info, [audit_model], Status.PASS if passed else Status.FAIL, reason,
        threshold=question + (f" (tolerance {tolerance_key} = {policy[tolerance_key]})" if tolerance_key else ""),
        value=statistic, details={"check": sanity}))


@pytest.mark.swiglu_audit_check(WORST_CASE_COMPARISON)
def test_worst_case_robust_accuracy_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cand, base = measure.adversarial(audit, candidate), measure.adversarial(audit, baseline)
    cmp = paired_comparison(cand["worst"], base["worst"], policy["confidence_level"], policy["alpha"])
    per_attack = {a: paired_comparison(cand["per_attack"][a], base["per_attack"][a],
                                       policy["confidence_level"], policy["alpha"]).to_dict()
                  for a in cand["per_attack"]}
    record_finding(comparison_finding(WORST_CASE_COMPARISON, audit_pair, cmp, policy,
                                      "worst-case robust accuracy", details={"per_attack": per_attack}))


@pytest.mark.swiglu_audit_check(TRANSFER)
def test_transfer_attack_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    onto_candidate = measure.transfer(audit, source=baseline, target=candidate)
    onto_baseline = measure.transfer(audit, source=candidate, target=baseline)
    cmp = paired_comparison(onto_candidate, onto_baseline, policy["confidence_level"], policy["alpha"])
    record_finding(comparison_finding(
        TRANSFER, audit_pair, cmp, policy,
        "accuracy of the candidate under the baseline's PGD examples vs the baseline under the candidate's",
        details={"candidate_accuracy_on_baseline_examples": float(np.mean(onto_candidate)),
                 "baseline_accuracy_on_candidate_examples": float(np.mean(onto_baseline))}))
