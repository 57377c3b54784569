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
from swiglu_audit.risk import Status, judged_finding, make_finding, no_better_than, with_status
from swiglu_audit.sequential import final_session, judged_comparison


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
    invalid = _invalid_examples(result, worst["attacks"])
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
            "invalid_examples": invalid,
        })
    if worst["masked"]:  # masked evidence never passes (DESIGN.md section 8)
        finding = no_better_than(finding, Status.WARN, _inconclusive(worst["masked"], worst["escalated"], threat))
    if invalid["out_of_budget"] or invalid["non_finite"]:
        finding = no_better_than(finding, Status.WARN, (
            f"the attacks returned {invalid['out_of_budget']} example(s) outside the budget (projected back into "
            f"it and judged there) and {invalid['non_finite']} non-finite example(s) (counted as broken): an "
            "attack that leaves its budget is not behaving as specified, so this number needs a look"))
    record_finding(finding)


def _invalid_examples(result: dict, attacks: list[str]) -> dict:
    """Adversarial examples the attacks returned outside their budget or non-finite, over seeds."""
    costs = [c for seed_costs in result["costs"] for c in seed_costs if c["attack"] in attacks]
    return {"out_of_budget": sum(c.get("out_of_budget", 0) for c in costs),
            "non_finite": sum(c.get("non_finite", 0) for c in costs)}


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
    candidate, baseline = audit_pair
    cand, base = (measure.threat_worst_case(audit, m, threat) for m in audit_pair)
    if not cand["attacks"]:
        pytest.skip(f"no {THREAT_MODELS[threat]} attack in [tool.swiglu_audit.adversarial] attacks")
    per_attack = {a: audit.statistics.compare(measure.adversarial(audit, candidate)["per_attack"][a],
                                              measure.adversarial(audit, baseline)["per_attack"][a]).to_dict()
                  for a in cand["attacks"]}

    def compare(session):
        return session.statistics.compare(*(measure.threat_worst_case(session, m, threat)["robust"] for m in audit_pair))
    finding = judged_comparison(audit, WORST_CASE_COMPARISON, audit_pair,
                                f"worst-case robust accuracy ({_threat_text(audit, threat)})", compare, aspect=threat,
                                details={"threat_model": _threat_text(audit, threat), "per_attack": per_attack,
                                          "masking_failures": {candidate: cand["masked"], baseline: base["masked"]}})
    session = final_session(audit, finding)
    record_finding(_masking_caps(finding, {m: measure.masked(session, m) for m in audit_pair}))


def _masking_caps(finding, failures: dict[str, list[str]]):
    """A comparison that involves a model whose gradient-masking checks fail is WARN at best,
    whichever way it points: that model's robustness is an upper bound, so neither a PASS nor the
    size of the difference rests on trustworthy evidence."""
    for model, failed in failures.items():
        if not failed:
            continue
        if finding.status == Status.PASS.value:
            finding = no_better_than(finding, Status.WARN, (
                f"inconclusive: {model}'s gradient-masking checks ({', '.join(failed)}) failed, so its "
                "robustness may be overstated and this comparison is not evidence either way"))
        else:  # the status stands; the reader still needs to know what the number rests on
            finding = with_status(finding, Status(finding.status), (
                f"note: {model}'s gradient-masking checks ({', '.join(failed)}) failed, so its robustness "
                "may be overstated"))
    return finding


@pytest.mark.swiglu_audit_check(TRANSFER)
def test_transfer_attack_vs_baseline(audit, audit_pair, record_finding):
    candidate, baseline = audit_pair
    onto_candidate = measure.transfer(audit, source=baseline, target=candidate)
    onto_baseline = measure.transfer(audit, source=candidate, target=baseline)

    def compare(session):
        return session.statistics.compare(measure.transfer(session, source=baseline, target=candidate),
                                          measure.transfer(session, source=candidate, target=baseline))
    finding = judged_comparison(
        audit, TRANSFER, audit_pair,
        f"accuracy of the candidate under the baseline's PGD examples ({_threat_text(audit, 'linf')}) "
        "vs the baseline under the candidate's", compare,
        details={"threat_model": _threat_text(audit, "linf"),
                 "candidate_accuracy_on_baseline_examples": float(np.mean(onto_candidate)),
                 "baseline_accuracy_on_candidate_examples": float(np.mean(onto_baseline))})
    # the examples come from PGD on each model: a masked source crafts weak examples, and a masked
    # target may only look robust
    session = final_session(audit, finding)
    record_finding(_masking_caps(finding, {m: measure.masked(session, m) for m in audit_pair}))
