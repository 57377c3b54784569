"""Adversarial (evasion) suite: the attack ensemble's worst case per model and threat model (Linf
at eps, L2 at eps_l2: one threat model per number), gradient-masking sanity checks, and the SwiGLU
candidate against each baseline (worst case per threat model, and transfer).

A model whose sanity checks fail is attacked harder (measure.adversarial.escalation), and none of
its robustness findings may PASS: its numbers are upper bounds, not evidence."""

import dataclasses

import numpy as np
import pytest

from swiglu_audit.checks.adversarial import SANITY, TRANSFER, WORST_CASE, WORST_CASE_COMPARISON
from swiglu_audit.checks.sanity import SANITY_CHECKS
from swiglu_audit.measure import adversarial as measure
from swiglu_audit.methods.attacks import THREAT_MODELS, describe_threat
from swiglu_audit.risk import Status, comparison_finding, judged_finding, make_finding, with_status


def _threat_text(audit, threat: str) -> str:
    """The threat model in words, as every robustness sentence names it."""
    cfg = audit.config.adversarial
    return describe_threat(threat, cfg.eps, cfg.eps_l2, audit.data.modality)


def _inconclusive(failures: list[str], escalated: dict, threat: str) -> str:
    """Why a masked model's robustness number is not evidence of robustness."""
    tried = "; ".join(escalated.values()) if escalated else (
        "no stronger attack for this threat model (the escalation is Linf only)" if threat == "l2" else "none")
    return (f"inconclusive: the gradient-masking sanity checks {', '.join(failures)} failed, so "
            "gradient-based attacks may be blind on this model and the number above is an upper bound; "
            f"escalated with: {tried}. Attack it adaptively (a bpda_forward stand-in for any "
            "non-differentiable step, EOT for randomness) before trusting it")


@pytest.mark.parametrize("threat", list(THREAT_MODELS))
@pytest.mark.swiglu_audit_check(WORST_CASE)
def test_worst_case_robust_accuracy(audit, audit_model, threat, record_finding):
    policy, cfg = audit.config.policy, audit.config.adversarial
    level = policy["confidence_level"]
    result = measure.adversarial(audit, audit_model)
    worst = measure.threat_worst_case(audit, audit_model, threat)
    if not worst["attacks"]:
        pytest.skip(f"no {THREAT_MODELS[threat]} attack in [tool.swiglu_audit.adversarial] attacks")
    estimate = audit.statistics.mean(worst["robust"])
    finding = judged_finding(
        WORST_CASE, [audit_model], estimate.value, policy,
        f"worst-case robust accuracy ({_threat_text(audit, threat)}) over "
        + ", ".join(worst["attacks"] + list(worst["escalated"])),
        aspect=threat, ci=(estimate.ci_low, estimate.ci_high), ci_level=level,
        details={
            "threat_model": _threat_text(audit, threat),
            "attacks": worst["attacks"], "escalation": worst["escalated"], "masking_failures": worst["masked"],
            "steps": cfg.steps,
            "clean_accuracy": audit.statistics.mean(result["clean"]).to_dict(),
            "per_attack": {a: audit.statistics.mean(result["per_attack"][a]).to_dict() for a in worst["attacks"]},
            "broken_by_first": worst["broken_by"],
            # per seed, per test example: the first attack that broke it, "clean" or "robust"
            "broken_by_example": worst["broken_by_example"],
            "level": threat,  # the report draws one budget curve per threat model
            "curve": [{"eps": eps, **audit.statistics.mean(r).to_dict()}
                      for eps, r in sorted(result["curve" if threat == "linf" else "curve_l2"].items())],
            "cost_per_seed": [[c for c in seed_costs if c["attack"] in worst["attacks"]] for seed_costs in result["costs"]],
        })
    if worst["masked"]:  # masked evidence never passes (DESIGN.md section 8)
        status = Status.WARN if finding.status == Status.PASS.value else Status(finding.status)
        finding = with_status(finding, status, _inconclusive(worst["masked"], worst["escalated"], threat))
    record_finding(finding)


@pytest.mark.parametrize("sanity", list(SANITY_CHECKS))
@pytest.mark.swiglu_audit_check(SANITY)
def test_evaluation_sanity(audit, audit_model, sanity, record_finding):
    policy, cfg = audit.config.policy, audit.config.adversarial
    result = dict(measure.adversarial(audit, audit_model), large_eps=cfg.large_eps)
    check = SANITY_CHECKS[sanity]
    passed, statistic, reason = check.judge(result, policy)
    question, tolerance_key = check.question, check.tolerance_key
    info = dataclasses.replace(SANITY, check=f"sanity_{sanity}", title=f"Sanity: {question}")
    record_finding(make_finding(
        info, [audit_model], Status.PASS if passed else Status.FAIL, reason,
        threshold=question + (f" (tolerance {tolerance_key} = {policy[tolerance_key]})" if tolerance_key else ""),
        value=statistic, details={"check": sanity}))


@pytest.mark.parametrize("threat", list(THREAT_MODELS))
@pytest.mark.swiglu_audit_check(WORST_CASE_COMPARISON)
def test_worst_case_robust_accuracy_vs_baseline(audit, audit_pair, threat, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cand, base = (measure.threat_worst_case(audit, m, threat) for m in audit_pair)
    if not cand["attacks"]:
        pytest.skip(f"no {THREAT_MODELS[threat]} attack in [tool.swiglu_audit.adversarial] attacks")
    cmp = audit.statistics.compare(cand["robust"], base["robust"])
    per_attack = {a: audit.statistics.compare(measure.adversarial(audit, candidate)["per_attack"][a],
                                              measure.adversarial(audit, baseline)["per_attack"][a]).to_dict()
                  for a in cand["attacks"]}
    finding = comparison_finding(WORST_CASE_COMPARISON, audit_pair, cmp, policy,
                                 f"worst-case robust accuracy ({_threat_text(audit, threat)})", aspect=threat,
                                 details={"threat_model": _threat_text(audit, threat), "per_attack": per_attack,
                                          "masking_failures": {candidate: cand["masked"], baseline: base["masked"]}})
    # A model whose masking checks fail may only look robust: where it looks better, the
    # comparison is void (never PASS); where it looks worse, the difference is a lower bound.
    for model, looks_better in ((candidate, cmp.difference > 0), (baseline, cmp.difference < 0)):
        failures = (cand if model == candidate else base)["masked"]
        if failures and looks_better:
            finding = with_status(finding, Status.WARN if finding.status == Status.PASS.value else Status(finding.status),
                                  f"void: {model} looks more robust, but its gradient-masking checks "
                                  f"({', '.join(failures)}) failed, so that evidence is untrustworthy")
        elif failures:
            finding = with_status(finding, Status(finding.status),
                                  f"note: {model}'s gradient-masking checks ({', '.join(failures)}) failed; "
                                  "its robustness may be overstated, so the difference may be larger")
    record_finding(finding)


@pytest.mark.swiglu_audit_check(TRANSFER)
def test_transfer_attack_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    onto_candidate = measure.transfer(audit, source=baseline, target=candidate)
    onto_baseline = measure.transfer(audit, source=candidate, target=baseline)
    cmp = audit.statistics.compare(onto_candidate, onto_baseline)
    record_finding(comparison_finding(
        TRANSFER, audit_pair, cmp, policy,
        f"accuracy of the candidate under the baseline's PGD examples ({_threat_text(audit, 'linf')}) "
        "vs the baseline under the candidate's",
        details={"threat_model": _threat_text(audit, "linf"),
                 "candidate_accuracy_on_baseline_examples": float(np.mean(onto_candidate)),
                 "baseline_accuracy_on_candidate_examples": float(np.mean(onto_baseline))}))
