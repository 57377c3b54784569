"""Data-poisoning suite: simulated attacks per model, candidate vs baseline, detection, integrity.

Models whose family is not in [tool.swiglu_audit.poisoning] families (and models loaded from
pretrained weights, which cannot be retrained) are skipped, with the reason in the skip message.
"""

import numpy as np
import pytest

from swiglu_audit.checks.data_integrity import DUPLICATES, LABEL_ERRORS, LEAKAGE
from swiglu_audit.checks.ood import auroc_estimate, compare_auroc
from swiglu_audit.checks.poison_detection import DETECTION, DETECTION_COMPARISON, DETECTORS, SCAN
from swiglu_audit.checks.poisoning import BACKDOOR, BACKDOOR_COMPARISON, LABEL_FLIP, LABEL_FLIP_COMPARISON, TARGETED_FLIP
from swiglu_audit.measure import poisoning as measure
from swiglu_audit.risk import Status, comparison_finding, judge_ceiling, judge_drop, judged_finding, make_finding, with_status
from swiglu_audit.stats import bootstrap_mean, paired_comparison

MAX_LISTED = 200  # sample indices listed per finding; the count is always complete


def _require_in_scope(audit, *names):
    for name in names:
        reason = measure.out_of_scope(audit, name)
        if reason:
            pytest.skip(f"not poisoned in this audit: {reason}")


def _index_space(audit) -> str:
    if audit.config.dataset:
        return "positions in the x_train (or the train Dataset) that your dataset factory returned"
    return "positions in the built-in digits training split"


def _train_pairs(audit, pairs) -> list[list[int]]:
    """(train position, other split's position) pairs, the train side in the user's own indexing."""
    unique = sorted(set(map(tuple, pairs)))[:MAX_LISTED]
    return [[audit.data.source_train_indices([i])[0], j] for i, j in unique]


def _largest_rate_vs_clean(result: dict, policy: dict):
    """The poisoned model at the largest rate vs the clean model of the same architecture and
    seeds, paired on the same test inputs."""
    rate = max(result["rates"])
    return rate, paired_comparison(result["poisoned"][rate], result["clean"], policy["confidence_level"],
                                   policy["alpha"])


def _curve(points: dict, level: float, zero=None) -> list[dict]:
    """[{rate, value, ci_low, ci_high ...}] for the report's rate plots; rate 0 is the clean model."""
    rows = [(0.0, zero)] if zero is not None else []
    return [{"rate": rate, **bootstrap_mean(m, level).to_dict()} for rate, m in rows + sorted(points.items())]


@pytest.mark.swiglu_audit_check(LABEL_FLIP)
def test_label_flip_degradation(audit, audit_model, record_finding):
    _require_in_scope(audit, audit_model)
    policy = audit.config.policy
    result = measure.label_flip(audit, audit_model)
    rate, cmp = _largest_rate_vs_clean(result, policy)
    status, reason = judge_drop(cmp, policy["max_label_flip_accuracy_drop"],
                                f"clean accuracy after flipping {rate:.0%} of training labels",
                                "max_label_flip_accuracy_drop")
    status = Status.WARN if status is Status.FAIL else status  # an inherent weakness, not a regression
    record_finding(make_finding(
        LABEL_FLIP, [audit_model], status, reason,
        threshold=f"accuracy lost <= max_label_flip_accuracy_drop = {policy['max_label_flip_accuracy_drop']}",
        value=cmp.difference, ci=(cmp.ci_low, cmp.ci_high), ci_level=cmp.level,
        details={"flip_rate": rate, "n_flipped": result["n_flipped"], "comparison": cmp.to_dict(),
                 "curve": _curve(result["poisoned"], policy["confidence_level"], result["clean"])}))


@pytest.mark.swiglu_audit_check(LABEL_FLIP_COMPARISON)
def test_label_flip_degradation_vs_baseline(audit, audit_pair, record_finding):
    _require_in_scope(audit, *audit_pair)
    policy = audit.config.policy
    candidate, baseline = audit_pair
    cand, base = measure.label_flip(audit, candidate), measure.label_flip(audit, baseline)
    rate = max(cand["rates"])
    # per-example accuracy change (poisoned - clean) of each architecture, compared paired
    cmp = paired_comparison(cand["poisoned"][rate].astype(float) - cand["clean"],
                            base["poisoned"][rate].astype(float) - base["clean"],
                            policy["confidence_level"], policy["alpha"])
    record_finding(comparison_finding(LABEL_FLIP_COMPARISON, audit_pair, cmp, policy,
                                      "accuracy change under label flipping", details={"flip_rate": rate}))


@pytest.mark.swiglu_audit_check(TARGETED_FLIP)
def test_targeted_label_flip(audit, audit_model, record_finding):
    _require_in_scope(audit, audit_model)
    policy = audit.config.policy
    result = measure.targeted(audit, audit_model)
    rate, cmp = _largest_rate_vs_clean(result, policy)
    what = (f"increase in class-{result['source']} test inputs predicted as class {result['target']} after "
            f"relabelling {rate:.0%} of class {result['source']}")
    record_finding(judged_finding(
        TARGETED_FLIP, [audit_model], cmp.difference, policy, what, ci=(cmp.ci_low, cmp.ci_high), ci_level=cmp.level,
        details={"source": result["source"], "target": result["target"], "rate": rate,
                 "n_flipped": result["n_flipped"], "comparison": cmp.to_dict(),
                 "curve": _curve(result["poisoned"], policy["confidence_level"], result["clean"])}))


@pytest.mark.swiglu_audit_check(BACKDOOR)
def test_backdoor_attack_success(audit, audit_model, record_finding):
    _require_in_scope(audit, audit_model)
    policy, level = audit.config.policy, audit.config.policy["confidence_level"]
    result = measure.backdoor_success(audit, audit_model)
    rate = max(result["rates"])
    asr = {r: m for r, m in result["asr"].items() if r != "clean_label"}
    cmp = paired_comparison(asr[rate], result["base"], level, policy["alpha"])
    reached = [r for r in sorted(asr) if asr[r].mean() >= 0.5]
    details = {
        "target": result["target"], "rate": rate, "n_poisoned": result["n_poisoned"],
        "asr": bootstrap_mean(asr[rate], level).to_dict(),
        "base_rate": bootstrap_mean(result["base"], level).to_dict(),
        "asr_above_base": cmp.to_dict(),
        "smallest_rate_with_asr_over_half": reached[0] if reached else None,
        "curve": _curve(asr, level, result["base"]),
        "clean_accuracy": _curve({r: m for r, m in result["clean_accuracy"].items() if r != "clean_label"},
                                 level, result["clean"]),
    }
    if "clean_label" in result["asr"]:
        details["clean_label_asr"] = bootstrap_mean(result["asr"]["clean_label"], level).to_dict()
    finding = judged_finding(
        BACKDOOR, [audit_model], cmp.difference, policy,
        f"attack success rate above the base rate with {rate:.0%} poison",
        ci=(cmp.ci_low, cmp.ci_high), ci_level=level, details=details)
    base = float(np.mean(result["base"]))
    if base > policy["max_backdoor_base_rate"]:  # the clean model already obeys the trigger
        finding = with_status(finding, Status.FAIL, (
            f"but the clean model already sends {base:.0%} of the triggered inputs to class "
            f"{result['target']} (max_backdoor_base_rate = {policy['max_backdoor_base_rate']}): the training "
            "data or the model may already carry a backdoor at this trigger, so 'above the base rate' "
            "understates it"))
    record_finding(finding)


@pytest.mark.swiglu_audit_check(BACKDOOR_COMPARISON)
def test_backdoor_attack_success_vs_baseline(audit, audit_pair, record_finding):
    _require_in_scope(audit, *audit_pair)
    policy = audit.config.policy
    cand, base = (measure.backdoor_success(audit, m) for m in audit_pair)
    rates = sorted(r for r in cand["asr"] if r != "clean_label")
    # per triggered input: success averaged over the poison rates (an area under the ASR curve)
    mean_asr = lambda result: np.mean([result["asr"][r] for r in rates], axis=0)
    cmp = paired_comparison(mean_asr(cand), mean_asr(base), policy["confidence_level"], policy["alpha"])
    record_finding(comparison_finding(BACKDOOR_COMPARISON, audit_pair, cmp, policy,
                                      "backdoor attack success averaged over poison rates",
                                      details={"rates": rates}))


@pytest.mark.swiglu_audit_check(DETECTION)
def test_poison_detection(audit, audit_model, record_finding):
    _require_in_scope(audit, audit_model)
    policy, level = audit.config.policy, audit.config.policy["confidence_level"]
    result = measure.detection(audit, audit_model)
    truth = result["truth"]
    per_detector = {}
    for det in DETECTORS:
        scores, metrics = result["scores"][det], result["metrics"][det]
        est = auroc_estimate(scores[:, truth], scores[:, ~truth], level, audit.config.ood["bootstrap"])
        per_detector[det] = {"auroc": est.to_dict(),
                             "precision": float(np.mean([m["precision"] for m in metrics])),
                             "recall": float(np.mean([m["recall"] for m in metrics])),
                             "n_flagged_per_seed": [m["n_flagged"] for m in metrics]}
    best = max(DETECTORS, key=lambda d: per_detector[d]["auroc"]["value"])
    auc = per_detector[best]["auroc"]
    record_finding(judged_finding(
        DETECTION, [audit_model], auc["value"], policy,
        f"best detector ({best}) AUROC on {result['n_poisoned']} planted backdoor samples",
        ci=(auc["ci_low"], auc["ci_high"]), ci_level=level,
        details={"poison_rate": result["rate"], "n_poisoned": result["n_poisoned"], "best_detector": best,
                 "positive_class": "poisoned training sample (higher score = more suspicious)",
                 "detectors": per_detector}))


@pytest.mark.swiglu_audit_check(DETECTION_COMPARISON)
@pytest.mark.parametrize("detector", DETECTORS)
def test_poison_detectability_vs_baseline(audit, audit_pair, detector, record_finding):
    _require_in_scope(audit, *audit_pair)
    policy = audit.config.policy
    split = lambda r: {"in": r["scores"][detector][:, r["truth"]], "out": r["scores"][detector][:, ~r["truth"]]}
    cand, base = (measure.detection(audit, m) for m in audit_pair)
    cmp = compare_auroc(split(cand), split(base), policy["confidence_level"], policy["alpha"],
                        audit.config.ood["bootstrap"])
    record_finding(comparison_finding(DETECTION_COMPARISON, audit_pair, cmp, policy,
                                      f"{detector} detector AUROC", aspect=detector,
                                      details={"detector": detector}))


@pytest.mark.swiglu_audit_check(SCAN)
def test_training_set_scan(audit, audit_model, record_finding):
    """Is the audited training set already poisoned? The trigger-agnostic scan (a reverse-
    engineered trigger per class, then the samples that depend on it), judged with its power:
    how well the same scan finds the harness's own planted backdoor in this architecture."""
    policy = audit.config.policy  # no retraining: every model scans the data it was trained on
    power = measure.scan_power(audit, audit_model)
    legacy = measure.scan(audit, audit_model)  # the published detectors' agreement, as leads
    if power is None:  # out of the poisoning suite's scope: the scan's power cannot be measured
        record_finding(make_finding(
            SCAN, [audit_model], Status.WARN,
            f"inconclusive: the trigger scan did not run because its power on this model cannot be "
            f"measured ({measure.out_of_scope(audit, audit_model)}); the published detectors flagged "
            f"{len(legacy['indices'])} samples as leads",
            "a scan result counts only where the scan's power on planted poison was measured",
            value=len(legacy["indices"]) / legacy["n_train"],
            details={"dataset": audit.data.name, "index_space": _index_space(audit),
                     "published_detectors": {"n_flagged": len(legacy["indices"]),
                                             "indices": audit.data.source_train_indices(legacy["indices"][:MAX_LISTED])}}))
        return
    found = measure.trigger_scan(audit, audit_model)
    flagged = np.flatnonzero(found["flags"])
    n_train = len(found["flags"])
    target = found["target"]
    # the suspected target's own anomaly index (the largest among classes whose trigger works)
    index = found["anomaly_index"][target] if target is not None else max(found["anomaly_index"])
    value = len(flagged) / n_train
    details = {
        "dataset": audit.data.name, "index_space": _index_space(audit), "n_flagged": len(flagged),
        "indices": audit.data.source_train_indices(flagged[:MAX_LISTED]),
        "suspected_target": target, "anomaly_index_per_class": found["anomaly_index"],
        "trigger_mask_l1_per_class": found["mask_l1"], "trigger_success": found["trigger_success"],
        "evidence": "each listed sample is labelled with the suspected target and its prediction leaves "
                    "that class when the recovered trigger region is neutralised, or its trigger region "
                    "matches the recovered pattern far better than its class does",
        "sample_scores": [round(float(found["scores"][i]), 2) for i in flagged[:MAX_LISTED]],
        "well_separated_classes": found["separated_classes"],
        "power_on_planted_backdoor": power,
        "published_detectors": {"n_flagged": len(legacy["indices"]),
                                "indices": audit.data.source_train_indices(legacy["indices"][:MAX_LISTED])},
    }
    if "mask" in found:  # the recovered trigger, for the report's picture
        details["trigger_image"] = np.round(found["mask"] * found["pattern"].mean(0), 3).tolist()
    what = f"{len(flagged)} training samples flagged ({value:.2%})"
    threshold = (f"FAIL when a class has a recovered trigger with anomaly index >= min_trigger_anomaly_index = "
                 f"{policy['min_trigger_anomaly_index']} and samples depend on it; PASS for nothing found only "
                 f"when the scan finds the harness's planted backdoor with recall >= min_scan_recall = "
                 f"{policy['min_scan_recall']}")
    if target is not None and len(flagged) >= 3 and index >= policy["min_trigger_anomaly_index"]:
        status, reason = Status.FAIL, (
            f"the training data or the model may already carry a backdoor: class {target} has a recovered "
            f"trigger of mask size {found['mask_l1'][target]:.1f} (anomaly index {index:.1f}, sending "
            f"{found['trigger_success']:.0%} of other-class inputs to it), and {what} depend on it")
    elif target is not None and len(flagged):
        status, reason = Status.WARN, (f"a lead: class {target} has a small recovered trigger (anomaly index "
                                       f"{index:.1f}) and {what} depend on it; inspect them")
    elif not power["target_found"] or (power["recall"] or 0.0) < policy["min_scan_recall"]:
        status, reason = Status.WARN, (
            f"inconclusive: nothing found, but this model's features hide planted poison: on the "
            f"harness's own {power['rate']:.0%} backdoor the scan "
            + ("did not find the target class" if not power["target_found"] else
               f"found only {power['recall']:.0%} of the poison (min_scan_recall = {policy['min_scan_recall']})"))
    else:
        status, reason = Status.PASS, (
            f"nothing found (largest anomaly index {index:.1f}); the same scan finds the harness's own "
            f"{power['rate']:.0%} backdoor in this architecture with recall {power['recall']:.2f} and "
            f"precision {power['precision'] if power['precision'] is not None else 0:.2f}")
    record_finding(make_finding(SCAN, [audit_model], status, reason, threshold, value=value, details=details))


@pytest.mark.swiglu_audit_check(LEAKAGE)
def test_split_leakage(audit, record_finding):
    policy, result = audit.config.policy, measure.integrity(audit)
    leaked = {split: sorted({j for _, j in r["exact"]} | {j for _, j, _ in r["near"]})
              for split, r in result["leaks"].items()}
    n_leaked = sum(len(v) for v in leaked.values())
    share = n_leaked / (result["n_test"] + result["n_val"])
    if n_leaked == 0:
        status, reason = Status.PASS, ("no test or validation sample has an exact or near duplicate in train "
                                       f"(any leak is a WARN; above max_leakage_share = "
                                       f"{policy['max_leakage_share']}, a FAIL)")
    else:
        status, reason = judge_ceiling(share, policy["max_leakage_share"], Status.FAIL,
                                       f"share of test and validation samples duplicated in train ({n_leaked})",
                                       "max_leakage_share")
        status = Status.WARN if status is Status.PASS else status  # any leak deserves a look
    record_finding(make_finding(
        LEAKAGE, [], status, reason, subject=audit.data.name,
        threshold=f"no leaked sample (WARN), share <= max_leakage_share = {policy['max_leakage_share']} (else FAIL)",
        value=share, details={"near_duplicate_rms": audit.config.poisoning["near_duplicate_rms"],
                              **{f"{split}_indices": v[:MAX_LISTED] for split, v in leaked.items()},
                              "train_index_space": _index_space(audit),
                              "pairs_train_vs_split": {split: _train_pairs(audit, [p[:2] for p in r["exact"] + r["near"]])
                                                       for split, r in result["leaks"].items()}}))


@pytest.mark.swiglu_audit_check(DUPLICATES)
def test_train_duplicates(audit, record_finding):
    policy, result = audit.config.policy, measure.integrity(audit)
    duplicated = sorted({j for _, j in result["within_exact"]} | {j for _, j, _ in result["within_near"]})
    share = len(duplicated) / result["n_train"]
    finding = judged_finding(
        DUPLICATES, [], share, policy, f"share of duplicated training samples ({len(duplicated)})",
        subject=audit.data.name,
        details={"index_space": _index_space(audit),
                 "indices": audit.data.source_train_indices(duplicated[:MAX_LISTED]),
                 "conflicting_label_pairs": [audit.data.source_train_indices(p)
                                             for p in result["conflicting_labels"][:MAX_LISTED]]})
    if result["conflicting_labels"] and finding.status == Status.PASS.value:
        finding = with_status(finding, Status.WARN,
                              f"but {len(result['conflicting_labels'])} duplicate pair(s) carry different labels")
    record_finding(finding)


@pytest.mark.swiglu_audit_check(LABEL_ERRORS)
def test_label_errors(audit, record_finding):
    policy, result = audit.config.policy, measure.integrity(audit)
    issues = result["labels"]
    share = len(issues["indices"]) / result["n_train"]
    record_finding(judged_finding(
        LABEL_ERRORS, [], share, policy, f"share of likely label errors ({len(issues['indices'])} samples)",
        subject=audit.data.name,
        details={"index_space": _index_space(audit),
                 "indices": audit.data.source_train_indices(issues["indices"][:MAX_LISTED]),
                 "suggested_labels": issues["suggested"][:MAX_LISTED],
                 "given_label_probability": issues["given_probability"][:MAX_LISTED],
                 "n_folds": issues["n_folds"]}))
