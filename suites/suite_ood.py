"""OOD and distribution-shift suite: detectors on near and far OOD sets, selective prediction,
corruptions and calibration under shift; per model, and SwiGLU candidate vs each baseline."""

import numpy as np
import pandas as pd
import pytest

from swiglu_audit.checks.ood import (
    CALIBRATION,
    CORRUPTION,
    CORRUPTION_COMPARISON,
    OOD_COMPARISON,
    OOD_DETECTION,
    POSITIVE_CLASS,
    SELECTIVE,
    SUBPOPULATION,
)
from swiglu_audit.errors import ModelContractError
from swiglu_audit.measure import ood as measure
from swiglu_audit.methods import ood_metrics
from swiglu_audit.methods.calibration import aurc, aurc_estimate, ece_estimate, expected_calibration_error, risk_coverage
from swiglu_audit.methods.corruptions import SEVERITIES
from swiglu_audit.methods.ood_metrics import roc_points, thin
from swiglu_audit.methods.ood_sets import LEVELS, sets_of_level
from swiglu_audit.verdicts.risk import judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison


@pytest.mark.swiglu_audit_check(OOD_DETECTION)
@pytest.mark.parametrize("level", LEVELS)
def test_ood_detection(audit, audit_model, level, record_finding):
    policy, cfg = audit.config.policy, audit.config.ood
    conf = policy["confidence_level"]
    scores = measure.detector_scores(audit, audit_model)
    chosen, val_auroc = measure.chosen_detector(audit, audit_model, level)
    table = pd.DataFrame(measure.detector_table(audit, audit_model, level))
    pooled = measure.level_scores(scores, level, chosen)
    est = ood_metrics.estimate("auroc", pooled["in"], pooled["out"], conf, cfg.bootstrap)
    msp = measure.level_scores(scores, level, "msp")
    record_finding(judged_finding(
        OOD_DETECTION, [audit_model], est.value, policy,
        f"{level}-OOD AUROC of {chosen} (chosen on validation data)", aspect=level,
        ci=(est.ci_low, est.ci_high), df=est.df, ci_level=conf,
        details={"level": level, "chosen_detector": chosen, "validation_auroc": val_auroc,
                 "positive_class": POSITIVE_CLASS,
                 "ood_sets": {s.name: s.description for s in sets_of_level(level, audit.data.modality)},
                 "modality": audit.data.modality,
                 "n_in": int(pooled["in"].shape[1]), "n_out": int(pooled["out"].shape[1]),
                 "unavailable_detectors": scores["unavailable"],
                 "table": table.round(4).to_dict(orient="records"),
                 "roc_first_seed": roc_points(pooled["in"][0], pooled["out"][0]),
                 "msp_auroc": float(ood_metrics.per_seed("auroc", msp["in"], msp["out"]).mean())}))


@pytest.mark.swiglu_audit_check(OOD_COMPARISON)
@pytest.mark.parametrize("level", LEVELS)
def test_ood_auroc_vs_baseline(audit, audit_pair, level, record_finding):
    def compare(session):
        cand, base = (measure.level_scores(measure.detector_scores(session, m), level, "msp") for m in audit_pair)
        stats = session.statistics
        return ood_metrics.compare("auroc", cand, base, stats.level, stats.alpha, session.config.ood.bootstrap)
    record_finding(judged_comparison(audit, OOD_COMPARISON, audit_pair, f"MSP {level}-OOD AUROC", compare,
                                     aspect=level, details={"level": level}))


@pytest.mark.swiglu_audit_check(SELECTIVE)
def test_selective_prediction(audit, audit_model, record_finding):
    policy, cfg = audit.config.policy, audit.config.ood
    conf = policy["confidence_level"]
    scores = measure.detector_scores(audit, audit_model)
    chosen, val_aurc = measure.selective_detector(audit, audit_model)
    est = aurc_estimate(scores["id"][chosen], scores["correct"], conf, cfg.bootstrap)
    coverage, risk = risk_coverage(scores["id"][chosen][0], scores["correct"][0])
    record_finding(judged_finding(
        SELECTIVE, [audit_model], est.value, policy, f"AURC with {chosen} as the confidence score",
        ci=(est.ci_low, est.ci_high), df=est.df, ci_level=conf,
        details={"score": chosen, "validation_aurc": val_aurc,
                 "test_aurc_by_score": {d: float(np.mean([aurc(s, c) for s, c in zip(scores["id"][d], scores["correct"])]))
                                        for d in scores["detectors"]},
                 "error_rate": float(1 - scores["correct"].mean()),
                 "risk_coverage": thin(coverage, risk)}))


def _skip_without_corruptions(audit) -> None:
    why = measure.corruptions_missing(audit)
    if why:
        pytest.skip(why)


@pytest.mark.swiglu_audit_check(CORRUPTION)
def test_corruption_robustness(audit, audit_model, record_finding):
    _skip_without_corruptions(audit)
    policy = audit.config.policy
    conf = policy["confidence_level"]
    result = measure.corruption(audit, audit_model)
    corrupted = measure.mean_corrupted_correct(result)
    clean = result["correct"][("clean", 0)]
    est = audit.statistics.mean(corrupted)
    # the judged quantity is the drop, so the finding shows the drop and the drop's own interval
    drop = audit.statistics.compare_shares(clean, corrupted)
    reference, reference_error, ce = measure.reference_model(audit, audit_model), None, {}
    if reference:
        try:
            ce = measure.corruption_errors(result, measure.corruption(audit, reference))
        except ModelContractError as exc:  # a broken reference costs the mCE, not this finding
            reference_error = str(exc)
    at_severity = lambda s: np.mean([result["correct"][(c, s)] for c in result["corruptions"]], axis=0)
    by_severity = [{"severity": 0, **audit.statistics.mean(clean).to_dict()}] + [
        {"severity": s, **audit.statistics.mean(at_severity(s)).to_dict()} for s in SEVERITIES]
    table = pd.DataFrame([{"corruption": c, **{f"severity_{s}": float(result["correct"][(c, s)].mean()) for s in SEVERITIES},
                           "corruption_error_vs_reference": ce.get(c)} for c in result["corruptions"]])
    valid_ce = [v for v in ce.values() if v is not None]
    record_finding(judged_finding(
        CORRUPTION, [audit_model], drop.difference, policy, "clean accuracy minus mean accuracy under corruptions",
        ci=(drop.ci_low, drop.ci_high), df=drop.df, ci_level=conf,
        details={"clean_accuracy": float(clean.mean()), "corrupted_accuracy": est.to_dict(),
                 "accuracy_drop": drop.to_dict(), "corruptions": result["corruptions"],
                 "not_applicable": {c: f"not applicable to {result['modality']} data" for c in result["not_applicable"]},
                 "reference_model": reference, "reference_error": reference_error, "mce_vs_reference": float(np.mean(valid_ce)) if valid_ce else None,
                 "curve": by_severity, "table": table.round(4).to_dict(orient="records")}))


@pytest.mark.swiglu_audit_check(CALIBRATION)
def test_calibration_under_shift(audit, audit_model, record_finding):
    _skip_without_corruptions(audit)
    policy, bins = audit.config.policy, audit.config.ood.ece_bins
    result = measure.corruption(audit, audit_model)

    def ece(key):  # mean over seeds
        return float(np.mean([expected_calibration_error(cf, cr, bins)
                              for cf, cr in zip(result["confidence"][key], result["correct"][key])]))

    shifted = {(c, s): ece((c, s)) for c in result["corruptions"] for s in SEVERITIES}
    keys = list(shifted)
    stats = audit.statistics
    est = ece_estimate([result["confidence"][k] for k in keys], [result["correct"][k] for k in keys], bins,
                       stats.level, stats.n_boot, stats.seed)
    record_finding(judged_finding(
        CALIBRATION, [audit_model], est.value, policy,
        "expected calibration error averaged over corruptions and severities",
        ci=(est.ci_low, est.ci_high), df=est.df, ci_level=est.level,
        details={"ece_clean": ece(("clean", 0)), "bins": bins,
                 "ece_by_severity": {s: float(np.mean([shifted[(c, s)] for c in result["corruptions"]])) for s in SEVERITIES},
                 "ece_by_corruption": {c: float(np.mean([shifted[(c, s)] for s in SEVERITIES])) for c in result["corruptions"]}}))


@pytest.mark.swiglu_audit_check(SUBPOPULATION)
def test_subpopulation_shift(audit, audit_model, record_finding):
    if audit.data.modality != "tabular":
        pytest.skip("not applicable to image data: a subpopulation shift is held out by a feature's range")
    if audit.zoo.spec(audit_model).weights:
        pytest.skip(f"'{audit_model}' is loaded from pretrained weights; the subpopulation shift retrains it")
    policy = audit.config.policy
    result = measure.subpopulation(audit, audit_model)
    if result["feature"] is None:
        pytest.skip(result["reason"])
    if result["n_test"] < 2:
        pytest.skip("fewer than two test inputs fall in the held-out range")
    cmp = audit.statistics.compare(result["held_out"], result["clean"])
    record_finding(judged_finding(
        SUBPOPULATION, [audit_model], -cmp.difference, policy,
        f"accuracy lost on the {result['n_test']} test inputs with feature {result['feature']} >= "
        f"{result['threshold']:.3g} (the top {result['share_held_out']:.0%} of its training values) when that range is "
        "held out of training",
        ci=(-cmp.ci_high, -cmp.ci_low), df=cmp.df, ci_level=cmp.level,
        details={"feature": result["feature"], "threshold": result["threshold"], "n_test": result["n_test"],
                 "n_train_held_out": result["n_train_held_out"], "share_held_out": result["share_held_out"],
                 "comparison": cmp.to_dict(),
                 "accuracy_trained_with": float(result["clean"].mean()),
                 "accuracy_trained_without": float(result["held_out"].mean())}))


@pytest.mark.swiglu_audit_check(CORRUPTION_COMPARISON)
def test_corruption_accuracy_vs_baseline(audit, audit_pair, record_finding):
    _skip_without_corruptions(audit)

    def compare(session):
        return session.statistics.compare_shares(*(measure.mean_corrupted_correct(measure.corruption(session, m))
                                                   for m in audit_pair))
    record_finding(judged_comparison(audit, CORRUPTION_COMPARISON, audit_pair, "mean accuracy under corruptions",
                                     compare))
