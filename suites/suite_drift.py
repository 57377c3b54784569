"""Drift suite: the live inputs a deployed model now sees, against its training data. Input drift
(once per audit), prediction drift and the live accuracy (measured, or estimated without labels)
per model, and whether the candidate degrades more than each baseline on the same live inputs.

Runs only where the user gives live data (x_live in the dataset factory's mapping, or `live`);
otherwise every test is skipped with that reason and the coverage matrix says what it needs."""

import numpy as np
import pytest

from swiglu_audit.checks.drift import DRIFT_DEGRADATION_COMPARISON, INPUT_DRIFT, LIVE_ACCURACY, PREDICTION_DRIFT
from swiglu_audit.measure import drift as measure
from swiglu_audit.methods.drift import input_drift_p, prediction_drift
from swiglu_audit.verdicts.risk import judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import replicate_comparison, replicate_estimate


def _skip_without_live(audit) -> None:
    why = measure.live_missing(audit)
    if why:
        pytest.skip(why)


def _split_alpha(audit) -> dict:
    """The policy with alpha split over the suite's p-value tests (input drift, and prediction
    drift per model; Bonferroni), so that a night of live data without drift raises a false
    alarm in at most alpha of nights, not in alpha per test."""
    tests = 1 + len(audit.zoo.specs)
    return {**audit.config.policy, "drift_alpha": audit.config.policy["alpha"] / tests}


def _no_trend(finding):
    """A p-value is evidence, not a quantity that gets better or worse: a scheduled audit gates
    these findings by their status (PASS -> WARN), never by the p-value's own movement."""
    finding.details.pop("better", None)
    return finding


@pytest.mark.swiglu_audit_check(INPUT_DRIFT)
def test_input_drift(audit, record_finding):
    _skip_without_live(audit)
    result = measure.input_drift(audit)
    policy = _split_alpha(audit)
    mmd = result["mmd"]
    details = {"mmd": mmd, "n_live": len(audit.data.x_live), "live_labelled": audit.data.y_live is not None}
    mmd_words = f"MMD^2 = {mmd['mmd2']:.3g} between {mmd['n_live']} live and {mmd['n_ref']} training inputs"
    features = result.get("features")
    combined = input_drift_p(mmd["p_value"], features["min_adjusted_p"] if features else None)
    what = f"{mmd_words}, permutation p-value"
    if features:
        # each test holds half of drift_alpha (Bonferroni): the drifted features at the KS test's half
        ks_alpha = policy["drift_alpha"] / combined["tests"]
        drifted = [j for j, p in enumerate(features["adjusted"]) if p < ks_alpha]
        details["features"] = {**features, "drifted_features": drifted, "alpha": ks_alpha}
        details["drifted_features"] = drifted
        test = "the MMD test's" if combined["decided_by"] == "mmd" else (
            "the per-feature KS tests'" + (f" (drifted features {drifted[:10]}{' ...' if len(drifted) > 10 else ''})"
                                           if drifted else ""))
        what = (f"{mmd_words}, permutation p-value {mmd['p_value']:.3g}; smallest per-feature KS p-value "
                f"(Benjamini-Hochberg) {features['min_adjusted_p']:.3g}; the smaller, {test}, times 2 for "
                "the two tests (Bonferroni)")
    details["decided_by"] = combined["decided_by"]
    record_finding(_no_trend(judged_finding(
        INPUT_DRIFT, [], combined["p_value"], policy, what, subject=audit.data.name, details=details)))


@pytest.mark.swiglu_audit_check(PREDICTION_DRIFT)
def test_prediction_drift(audit, audit_model, record_finding):
    _skip_without_live(audit)
    o = measure.outputs(audit, audit_model)
    result = prediction_drift(o["test_pred"][0], o["live_pred"][0], audit.data.n_classes)
    record_finding(_no_trend(judged_finding(
        PREDICTION_DRIFT, [audit_model], result["p_value"], _split_alpha(audit),
        f"chi-square test of predicted classes, live against test (statistic {result['statistic']:.3g}), p-value",
        details=result)))


@pytest.mark.swiglu_audit_check(LIVE_ACCURACY)
def test_live_accuracy(audit, audit_model, record_finding):
    _skip_without_live(audit)
    change, reps, parts = measure.accuracy_change(audit, audit_model)
    stats = audit.statistics
    n_live, n_test = len(audit.data.x_live), len(audit.data.x_test)
    drop = replicate_estimate(-change, -reps, n_live, stats.level, bounds=(-1.0, 1.0),
                              floor=measure.change_floor(parts, n_live, n_test))
    what = ("test accuracy minus live accuracy, measured with the live labels" if parts["measured"] else
            "accuracy drop from test to live inputs, both estimated without labels (ATC)")
    record_finding(judged_finding(
        LIVE_ACCURACY, [audit_model], drop.value, audit.config.policy, what, ci=(drop.ci_low, drop.ci_high), df=drop.df, ci_level=drop.level,
        details={**parts, "live_accuracy_estimate_mean": float(np.mean(parts["live_estimate"])),
                 **({"live_accuracy_mean": float(np.mean(parts["live_accuracy"]))} if parts["measured"] else {})}))


@pytest.mark.swiglu_audit_check(DRIFT_DEGRADATION_COMPARISON)
def test_drift_degradation_vs_baseline(audit, audit_pair, record_finding):
    _skip_without_live(audit)

    def compare(session):
        (a, ra, _), (b, rb, _) = (measure.accuracy_change(session, m) for m in audit_pair)
        stats = session.statistics
        n_live = len(session.data.x_live)
        return replicate_comparison(a, ra, b, rb, n_live, stats.level, stats.alpha, bounds=(-2.0, 2.0),
                                    floor=measure.comparison_floor(n_live, len(session.data.x_test)))
    measured = audit.data.y_live is not None
    record_finding(judged_comparison(
        audit, DRIFT_DEGRADATION_COMPARISON, audit_pair,
        "accuracy change from test to live inputs, " + ("measured" if measured else "estimated without labels (ATC)"),
        compare, details={"measured": measured}))
