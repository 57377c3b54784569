"""Adversarial (evasion) suite: the attack ensemble's worst case per model and threat model (Linf
at eps, L2 at eps_l2: one threat model per number), gradient-masking sanity checks, and the SwiGLU
candidate against each baseline (worst case per threat model, and transfer).

A model whose sanity checks fail is attacked harder (measure.adversarial.escalation), and none of
its robustness findings may PASS: its numbers are upper bounds, not evidence."""

import dataclasses

import numpy as np
import pytest

from swiglu_audit.checks.adversarial import SANITY, TRANSFER, WORST_CASE, WORST_CASE_COMPARISON, invalid_examples
from swiglu_audit.checks.sanity import SANITY_CHECKS
from swiglu_audit.measure import adversarial as measure
from swiglu_audit.methods.attack_registry import THREAT_MODELS, describe_threat
from swiglu_audit.verdicts.risk import decided_finding, judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison


def _threat_text(audit, threat: str) -> str:
    """The threat model in words, as every robustness sentence names it."""
    cfg = audit.config.adversarial
    return describe_threat(threat, cfg.eps, cfg.eps_l2, audit.data.modality)


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
    invalid = invalid_examples(result["costs"], worst["attacks"])
    finding = judged_finding(
        WORST_CASE, [audit_model], estimate.value, policy,
        f"worst-case robust accuracy ({_threat_text(audit, threat)}) over "
        + ", ".join(worst["attacks"] + list(worst["escalated"])),
        aspect=threat, ci=(estimate.ci_low, estimate.ci_high), df=estimate.df, se=estimate.se, ci_level=level,
        details={
            "threat_model": _threat_text(audit, threat),
            "attacks": worst["attacks"], "escalation": worst["escalated"], "masking_failures": worst["masked"],
            "steps": cfg.steps,
            "clean_accuracy": audit.statistics.mean(result["clean"]).to_dict(),
            "per_attack": {a: audit.statistics.mean(result["per_attack"][a]).to_dict() for a in worst["attacks"]},
            "broken_by_first": worst["broken_by"],
            # per seed, per test example: the first attack that broke it, "clean" or "robust"
            "broken_by_example": worst["broken_by_example"],
            # which test inputs those are (`AuditData.evaluation_rows`: class-stratified, not the first n)
            "attacked_test_rows": audit.data.evaluation_rows("test", cfg.n_examples).tolist(),
            "level": threat,  # the report draws one budget curve per threat model
            "curve": [{"eps": eps, **audit.statistics.mean(r).to_dict()}
                      for eps, r in sorted(result["curve" if threat == "linf" else "curve_l2"].items())],
            "cost_per_seed": [[c for c in seed_costs if c["attack"] in worst["attacks"]] for seed_costs in result["costs"]],
            "invalid_examples": invalid,
        },
        facts={"masking_failures": worst["masked"], "escalation": worst["escalated"], "threat": threat,
               "invalid_examples": invalid})
    record_finding(finding)


@pytest.mark.parametrize("sanity", list(SANITY_CHECKS))
@pytest.mark.swiglu_audit_check(SANITY)
def test_evaluation_sanity(audit, audit_model, sanity, record_finding):
    policy, cfg = audit.config.policy, audit.config.adversarial
    result = dict(measure.adversarial(audit, audit_model), large_eps=cfg.large_eps)
    check = SANITY_CHECKS[sanity]
    verdict = check.judge(result, policy)
    info = dataclasses.replace(SANITY, check=f"sanity_{sanity}", title=f"Sanity: {check.question}")
    interval = verdict.interval
    record_finding(decided_finding(
        info, [audit_model], {"passed": verdict.passed, "sentence": verdict.sentence, "question": check.question,
                              "tolerance_key": check.tolerance_key}, policy,
        value=verdict.statistic,
        ci=(interval.ci_low, interval.ci_high) if interval else None, ci_level=interval.level if interval else None,
        df=interval.df if interval else None, details={"check": sanity}))


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
                                          "masking_failures": {candidate: cand["masked"], baseline: base["masked"]}},
                                facts=lambda session: {"masked_models": {m: measure.masked(session, m) for m in audit_pair},
                                                       "baseline": baseline})
    record_finding(finding)


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
                 "baseline_accuracy_on_candidate_examples": float(np.mean(onto_baseline))},
        # the examples come from PGD on each model: a masked source crafts weak examples, and a
        # masked target may only look robust
        facts=lambda session: {"masked_models": {m: measure.masked(session, m) for m in audit_pair}})
    record_finding(finding)
