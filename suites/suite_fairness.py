"""Fairness suite: per model, who pays for the errors by class (clean, under the Linf worst case,
under corruptions) and by the groups the user named; per pair, whether the SwiGLU candidate
amplifies a disparity against the baseline."""

import numpy as np
import pytest

from swiglu_audit.checks.fairness import (
    CLASS_DISPARITY,
    GROUP_DISPARITY,
    PARITY_COMPARISON,
    WORST_CLASS_COMPARISON,
    WORST_GROUP_COMPARISON,
)
from swiglu_audit.measure import fairness as measure
from swiglu_audit.verdicts.risk import judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import replicate_comparison, replicate_estimate


def _estimate(audit, per_seed, replicates, n_examples, floor):
    return replicate_estimate(per_seed, replicates, n_examples, audit.statistics.level, bounds=(0.0, 1.0), floor=floor)


def _class_facts(audit, models, outcome, r) -> dict:
    """What the class checks' caps read: the data's classes the measured inputs lack, and, for
    robust accuracy, the gradient-masking checks each model fails."""
    from swiglu_audit.measure.adversarial import masked

    missing = [c for c in range(audit.data.n_classes) if c not in set(int(p) for p in r["present"])]
    return {"missing_classes": missing, "n_examples": r["n_examples"],
            "masked_models": {m: masked(audit, m) for m in models} if outcome == "robust" else {}}


def _skip_without_groups(audit):
    why = measure.groups_missing(audit)
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("outcome", list(measure.OUTCOMES))
@pytest.mark.swiglu_audit_check(CLASS_DISPARITY)
def test_class_disparity(audit, audit_model, outcome, record_finding):
    why = measure.outcome_missing(audit, outcome)
    if why:
        pytest.skip(why)
    r = measure.by_class(audit, audit_model, outcome)
    n = r["n_examples"]
    gap = _estimate(audit, r["gap"], r["gap_replicates"], n, r["gap_floor"])
    worst = _estimate(audit, r["worst"], r["worst_replicates"], n, r["worst_floor"])
    per_class = [{"class": int(c), "value": float(np.mean(r["per_class"][:, c])), "size": r["class_sizes"][c]}
                 for c in r["present"]]
    worst_class = min(per_class, key=lambda p: p["value"])
    # a class with no measured input is in no gap: say so, or "the worst class" reads as the worst of all
    absent = sorted(set(range(audit.data.n_classes)) - {int(c) for c in r["present"]})
    unmeasured = (f"; not measured: class{'es' if len(absent) > 1 else ''} {', '.join(map(str, absent))}, "
                  "with no input among those measured") if absent else ""
    what = (f"gap between the best and the worst class, {measure.OUTCOMES[outcome]} (worst on average: class "
            f"{worst_class['class']} at {worst_class['value']:.3f}; each seed's worst class {worst.value:.3f} "
            f"[{worst.ci_low:.3f}, {worst.ci_high:.3f}]{unmeasured})")
    record_finding(judged_finding(
        CLASS_DISPARITY, [audit_model], gap.value, audit.config.policy, what, ci=(gap.ci_low, gap.ci_high), df=gap.df,
        ci_level=gap.level, aspect=outcome, facts=_class_facts(audit, [audit_model], outcome, r),
        details={"outcome": measure.OUTCOMES[outcome], "level": outcome, "per_class": per_class,
                 "worst_class": worst_class["class"], "worst": worst.to_dict(), "gap": gap.to_dict(),
                 "classes_not_measured": absent,
                 "n_examples": n, "groups": measure.groups_missing(audit) or "given (see group_disparity)"}))


@pytest.mark.swiglu_audit_check(GROUP_DISPARITY)
def test_group_disparity(audit, audit_model, record_finding):
    _skip_without_groups(audit)
    r = measure.by_group(audit, audit_model)
    n = len(audit.data.y_test)
    estimates = {k: _estimate(audit, r[k], r[f"{k}_replicates"], n, r[f"{k}_floor"])
                 for k in ("equalized_odds_difference", "demographic_parity_difference", "worst_group_accuracy")}
    eo = estimates["equalized_odds_difference"]
    by_group = [{"group": g, "index": i, "value": float(np.mean(r["accuracy_by_group"][:, i])), "size": r["group_sizes"][i]}
                for i, g in enumerate(r["groups"])]
    worst = estimates["worst_group_accuracy"]
    record_finding(judged_finding(
        GROUP_DISPARITY, [audit_model], eo.value, audit.config.policy,
        f"equalised-odds difference between the {len(r['groups'])} groups ({audit.data.groups_source}); "
        f"demographic-parity difference {estimates['demographic_parity_difference'].value:.3f}, worst-group accuracy "
        f"{worst.value:.3f} [{worst.ci_low:.3f}, {worst.ci_high:.3f}]",
        ci=(eo.ci_low, eo.ci_high), df=eo.df, ci_level=eo.level,
        details={**{k: e.to_dict() for k, e in estimates.items()}, "by_group": by_group,
                 "group_curve": [{"group": p["index"], "value": p["value"]} for p in by_group],
                 "groups_from": audit.data.groups_source, "fairlearn_per_seed": r["fairlearn"]}))


def _compare(a: dict, b: dict, key: str, session, n: int):
    """Candidate - baseline of metric `key`, the two models' replicates on the same resamples, the
    least variance the sum of theirs."""
    return replicate_comparison(a[key], a[f"{key}_replicates"], b[key], b[f"{key}_replicates"], n,
                                session.statistics.level, session.statistics.alpha, bounds=(-1.0, 1.0),
                                floor=a[f"{key}_floor"] + b[f"{key}_floor"])


@pytest.mark.parametrize("outcome", ["accuracy", "robust"])
@pytest.mark.swiglu_audit_check(WORST_CLASS_COMPARISON)
def test_worst_class_accuracy_vs_baseline(audit, audit_pair, outcome, record_finding):
    why = measure.outcome_missing(audit, outcome)
    if why:
        pytest.skip(why)

    def compare(session):
        a, b = (measure.by_class(session, m, outcome) for m in audit_pair)
        return _compare(a, b, "worst", session, a["n_examples"])
    def facts(session):
        return _class_facts(session, audit_pair, outcome, measure.by_class(session, audit_pair[0], outcome))
    record_finding(judged_comparison(audit, WORST_CLASS_COMPARISON, audit_pair,
                                     f"worst-class {measure.OUTCOMES[outcome]}", compare, aspect=outcome, facts=facts))


@pytest.mark.swiglu_audit_check(WORST_GROUP_COMPARISON)
def test_worst_group_accuracy_vs_baseline(audit, audit_pair, record_finding):
    _skip_without_groups(audit)

    def compare(session):
        a, b = (measure.by_group(session, m) for m in audit_pair)
        return _compare(a, b, "worst_group_accuracy", session, len(session.data.y_test))
    record_finding(judged_comparison(audit, WORST_GROUP_COMPARISON, audit_pair,
                                     f"worst-group accuracy ({audit.data.groups_source})", compare))


@pytest.mark.parametrize("parity", ["demographic_parity", "equalized_odds"])
@pytest.mark.swiglu_audit_check(PARITY_COMPARISON)
def test_group_parity_vs_baseline(audit, audit_pair, parity, record_finding):
    _skip_without_groups(audit)
    key = f"{parity}_difference"

    def compare(session):
        a, b = (measure.by_group(session, m) for m in audit_pair)
        return _compare(a, b, key, session, len(session.data.y_test))
    record_finding(judged_comparison(audit, PARITY_COMPARISON, audit_pair,
                                     f"{parity.replace('_', ' ')} difference between groups", compare, aspect=parity))
