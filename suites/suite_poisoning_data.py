"""Data-poisoning suite, finding the poison: the published detectors scored on the harness's
planted backdoor, the candidate's detectability against each baseline, the trigger-agnostic scan
of the audited training set (judged with its measured power), and data integrity (leakage,
duplicates, label errors). Sample indices are positions in the user's own training data.
"""


import numpy as np
import pytest

from swiglu_audit.checks.data_integrity import DUPLICATES, LABEL_ERRORS, LEAKAGE, TEST_DUPLICATES
from swiglu_audit.checks.poison_detection import (
    DETECTION,
    DETECTION_COMPARISON,
    SCAN,
    TRAINING_SET_VERDICT,
    census_group,
    natural_shortcut,
)
from swiglu_audit.measure import poisoning as measure
from swiglu_audit.methods import relabel_census
from swiglu_audit.methods.integrity import copies_inflation
from swiglu_audit.methods.ood_metrics import auroc_estimate, compare_auroc
from swiglu_audit.methods.poison_detectors import DETECTORS
from swiglu_audit.pytest.fixtures import skip_unless_poisoned
from swiglu_audit.verdicts.risk import decided_finding, judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison

MAX_LISTED = 200  # sample indices listed per finding; the count is always complete


def _index_space(audit) -> str:
    if audit.config.dataset:
        return "positions in the x_train (or the train Dataset) that your dataset factory returned"
    return "positions in the built-in digits training split"


def _train_pairs(audit, pairs) -> list[list[int]]:
    """(train position, other split's position) pairs, the train side in the user's own indexing."""
    unique = sorted(set(map(tuple, pairs)))[:MAX_LISTED]
    return [[audit.data.source_train_indices([i])[0], j] for i, j in unique]


@pytest.mark.swiglu_audit_check(DETECTION)
def test_poison_detection(audit, audit_model, record_finding):
    skip_unless_poisoned(audit, audit_model)
    policy, level = audit.config.policy, audit.config.policy["confidence_level"]
    result = measure.detection(audit, audit_model)
    truth = result["truth"]
    per_detector = {}
    for det in DETECTORS:
        scores, metrics = result["scores"][det], result["metrics"][det]
        est = auroc_estimate(scores[:, truth], scores[:, ~truth], level, audit.statistics.n_boot, audit.statistics.seed)
        per_detector[det] = {"auroc": est.to_dict(),
                             "precision": float(np.mean([m["precision"] for m in metrics])),
                             "recall": float(np.mean([m["recall"] for m in metrics])),
                             "n_flagged_per_seed": [m["n_flagged"] for m in metrics]}
    best = max(DETECTORS, key=lambda d: per_detector[d]["auroc"]["value"])
    # the best of several detectors, chosen on the same scores it is judged on: its interval at
    # the level split over the detectors (Bonferroni), so the choice cannot flatter the floor
    chosen_level = 1 - (1 - level) / len(DETECTORS)
    scores = result["scores"][best]
    auc = auroc_estimate(scores[:, truth], scores[:, ~truth], chosen_level, audit.statistics.n_boot,
                         audit.statistics.seed).to_dict()
    record_finding(judged_finding(
        DETECTION, [audit_model], auc["value"], policy,
        f"best detector ({best}) AUROC on {result['n_poisoned']} planted backdoor samples",
        ci=(auc["ci_low"], auc["ci_high"]), df=auc["df"], ci_level=chosen_level,
        details={"poison_rate": result["rate"], "n_poisoned": result["n_poisoned"], "best_detector": best,
                 "positive_class": "poisoned training sample (higher score = more suspicious)",
                 "detectors": per_detector}))


@pytest.mark.swiglu_audit_check(DETECTION_COMPARISON)
@pytest.mark.parametrize("detector", DETECTORS)
def test_poison_detectability_vs_baseline(audit, audit_pair, detector, record_finding):
    skip_unless_poisoned(audit, *audit_pair)
    split = lambda r: {"in": r["scores"][detector][:, r["truth"]], "out": r["scores"][detector][:, ~r["truth"]]}  # noqa: E731

    def compare(session):
        cand, base = (split(measure.detection(session, m)) for m in audit_pair)
        stats = session.statistics
        return compare_auroc(cand, base, stats.level, stats.alpha, stats.n_boot, stats.seed)
    record_finding(judged_comparison(audit, DETECTION_COMPARISON, audit_pair, f"{detector} detector AUROC", compare,
                                     aspect=detector, details={"detector": detector}))


def _scan_evidence(audit, model: str) -> dict:
    """One model's scan of the audited training set: {"facts", "value", "details", "flagged"},
    judged by the scan's decision table (no retraining: every model scans the data it was trained
    on). Memoised: the dataset's verdict and every model's finding read the same evidence."""
    def compute():
        power = measure.scan_power(audit, model)
        published_scan = measure.published_detectors_scan(audit, model)
        published = {"n_flagged": len(published_scan["indices"]),
                     "indices": audit.data.source_train_indices(published_scan["indices"][:MAX_LISTED])}
        if power is None:  # out of the poisoning suite's scope: the scan's power cannot be measured
            return {"facts": {"power": None, "out_of_scope": measure.out_of_scope(audit, model),
                              "n_published": len(published_scan["indices"])},
                    "value": len(published_scan["indices"]) / published_scan["n_train"], "flagged": [],
                    "details": {"dataset": audit.data.name, "index_space": _index_space(audit),
                                "published_detectors": published}}
        found = measure.trigger_scan(audit, model)
        facts = {"power": power, **measure.scan_facts(found, audit.config.poisoning.threat_rate,
                                                      audit.config.policy["min_scan_recall"])}
        census, target, flagged = facts["census"], facts["target"], np.flatnonzero(found["flags"])
        # what the finding lists and names: the census's group where the census is the test that decides
        listed = np.flatnonzero(measure.listed_samples(found))
        named = census["target"] if census_group(facts) else (target if target is not None else census.get("lead"))
        details = {
            "dataset": audit.data.name, "index_space": _index_space(audit), "n_flagged": len(listed),
            "indices": audit.data.source_train_indices(listed[:MAX_LISTED]), "suspected_target": named,
            "trigger_scan": {"suspected_target": target, "n_flagged": len(flagged)},
            "anomaly_index_per_class": found["anomaly_index"],
            "trigger_mask_l1_per_class": found["mask_l1"], "trigger_success": found["trigger_success"],
            "evidence": "each listed sample rests on the recovered trigger (without its region the model's probability "
                        "of the target falls and the prediction leaves the class), carries it (its region matches the "
                        "recovered pattern better than all but a sliver of the other classes' inputs, in a group of the "
                        "class set apart by the match), or is in the relabel census's group (below); "
                        "target_label_neighbours: the share of its 10 nearest training inputs outside the trigger's "
                        "region that carry the target label; class_cohesion: the same share's median over the class's "
                        "unflagged samples; own_class_likeness: the flagged samples' median over the class's (poison "
                        "relabelled from another class looks like that class: near 0)",
            "samples": _listed_evidence(audit, found, listed[:MAX_LISTED]),
            "well_separated_classes": found["separated_classes"],
            "power_on_planted_backdoors": power,
            "published_detectors": published,
            "own_class_likeness": facts["likeness"], "class_cohesion": found.get("class_cohesion"),
            "n_looking_like_another_class": facts["n_relabelled"], "n_carrying_a_pattern": facts["n_carrying"],
        }
        if "mask" in found:  # the recovered trigger, for the report's picture
            details["trigger_image"] = np.round(found["mask"] * found["pattern"].mean(0), 3).tolist()
        census_flagged = np.flatnonzero(found["census_flags"])
        details["relabel_census"] = {
            **found["census"], "n_flagged": len(census_flagged),
            "indices": audit.data.source_train_indices(census_flagged[:MAX_LISTED]),
            "evidence": f"groups: per class, its samples that look like other classes (the share of their "
                        f"{relabel_census.NEIGHBOURS} nearest training inputs carrying their own label, over the class's "
                        f"median share, under {relabel_census.LOOKS_OTHER_LIKENESS}; each coordinate's difference capped "
                        f"at {relabel_census.CAP:g} data scale, and coordinates a part of the class holds at one value "
                        "left out); transfer: the share of other classes' inputs that what the group shares (stamped or "
                        "added) sends to the class in this model, above the base rate; target: the class whose group "
                        "transfers most, when it reaches the share required for its size; lead: where there is no "
                        "target, a group far larger than any other class's that moves some inputs"}
        return {"facts": facts, "value": len(listed) / len(found["flags"]), "details": details,
                "flagged": list(audit.data.source_train_indices(listed)) if len(listed) else []}
    return audit.memo(("scan-evidence", model), compute)


def _scanned_models(audit) -> list[str]:
    return list(audit.zoo.specs)


def _scan_outcome(audit, model: str) -> dict:
    """What one model's scan says, by the scan's own decision table (its condition alone). A model
    that cannot be scanned (it does not build, or diverged) is no evidence either way: ERROR here,
    its own findings say why, and the other models' findings stand."""
    # out of the poisoning suite's scope by the configuration: this model does not scan
    scanned = measure.out_of_scope(audit, model) is None
    try:
        evidence = _scan_evidence(audit, model)
    except Exception as exc:  # noqa: BLE001  (the model's own scan finding carries the error)
        return {"model": model, "status": "ERROR", "reason": f"could not be scanned ({type(exc).__name__}: {exc})",
                "n_flagged": 0, "suspected_target": None, "flagged": [], "scanned": scanned, "set_aside": False}
    status, reason, _, _ = SCAN.condition.judge(evidence["facts"], audit.config.policy)
    facts = evidence["facts"]
    set_aside = facts.get("power") is not None and natural_shortcut(facts)
    suspected = evidence["details"].get("suspected_target")
    return {"model": model, "status": status.value, "reason": reason, "n_flagged": len(evidence["flagged"]),
            "suspected_target": suspected, "flagged": evidence["flagged"], "scanned": scanned,
            "set_aside": set_aside}


@pytest.mark.swiglu_audit_check(SCAN)
def test_training_set_scan(audit, audit_model, record_finding):
    """Is the audited training set already poisoned? The trigger-agnostic scan (a reverse-
    engineered trigger per class, then the samples that depend on it), judged with its power:
    how well the same scan finds each trigger kind of the threat panel, planted in the audited
    set at the threat rate, in this architecture. The
    same data scanned through another model that flags it caps this model's "nothing found"."""
    evidence = _scan_evidence(audit, audit_model)
    others = [_scan_outcome(audit, m) for m in _scanned_models(audit) if m != audit_model]
    # flags another scan set aside as a natural shortcut contradict nothing
    flagging = [o["model"] for o in others if o["n_flagged"] and not o["set_aside"] and o["status"] in ("FAIL", "WARN")]
    record_finding(decided_finding(SCAN, [audit_model], {**evidence["facts"], "flagged_by_other_models": flagging},
                                   audit.config.policy, value=evidence["value"],
                                   details={**evidence["details"], "other_models": [
                                       {k: o[k] for k in ("model", "status", "n_flagged", "suspected_target")}
                                       for o in others]}))


@pytest.mark.swiglu_audit_check(TRAINING_SET_VERDICT)
def test_training_set_verdict(audit, record_finding):
    """One verdict per training set: every model's scan is evidence about the same data."""
    outcomes = [_scan_outcome(audit, m) for m in _scanned_models(audit)]
    # the samples of every scan that did not set its flags aside as a natural shortcut
    union = sorted({i for o in outcomes if not o["set_aside"] for i in o["flagged"]})
    cfg = audit.config.poisoning
    # the panel's poison is planted into backdoor_target alone: the only target class a PASS covers
    threat = {"rate": cfg.threat_rate, "kinds": list(cfg.threat_triggers), "target": cfg.backdoor_target}
    record_finding(decided_finding(
        TRAINING_SET_VERDICT, [o["model"] for o in outcomes], {"scans": outcomes, "threat": threat}, audit.config.policy,
        subject=audit.data.name, value=len(union) / len(audit.data.y_train),
        details={"dataset": audit.data.name, "index_space": _index_space(audit), "n_flagged": len(union),
                 "indices": union[:MAX_LISTED], "threat": threat,
                 "per_model": [{k: o[k] for k in ("model", "status", "reason", "n_flagged", "suspected_target", "scanned",
                                                  "set_aside")}
                               for o in outcomes]}))


def _listed_evidence(audit, found: dict, flagged: np.ndarray) -> list[dict]:
    """Each listed sample's evidence, by its index in the user's own training set."""
    whys = (("evidence_rests_on", "rests on the trigger"), ("evidence_carries", "carries the trigger"),
            ("census_flags", "is in the relabel census's group"))
    return [{"index": index, "why": " and ".join(why for key, why in whys if found[key][i]),
             "probability_fall": round(float(found["evidence_fall"][i]), 3),
             "target_label_neighbours": round(float(found["target_neighbours"][i]), 2),
             "pattern_match_share": round(float(found["evidence_match"][i]), 4)}
            for index, i in zip(audit.data.source_train_indices(flagged), flagged)]


@pytest.mark.swiglu_audit_check(LEAKAGE)
def test_split_leakage(audit, record_finding):
    policy, result = audit.config.policy, measure.integrity(audit)
    leaked = {split: sorted({j for _, j in r["exact"]} | {j for _, j, _ in r["near"]})
              for split, r in result["leaks"].items()}
    in_val = result["test_in_val"]
    val_pairs = sorted({(i, j) for i, j in in_val["exact"]} | {(i, j) for i, j, _ in in_val["near"]})
    leaked["test"] = sorted(set(leaked["test"]) | {j for _, j in val_pairs})
    n_leaked = sum(len(v) for v in leaked.values())
    share = n_leaked / (result["n_test"] + result["n_val"])
    finding = judged_finding(
        LEAKAGE, [], share, policy,
        f"share of test and validation samples duplicated in train, or test samples in validation ({n_leaked})",
        subject=audit.data.name, details={"near_duplicate_rms": audit.config.poisoning.near_duplicate_rms,
                                          "near_duplicate_ratio": audit.config.poisoning.near_duplicate_ratio,
                              **{f"{split}_indices": v[:MAX_LISTED] for split, v in leaked.items()},
                              "train_index_space": _index_space(audit),
                              "shift_search": result["shift_search"],
                              "pairs_train_vs_split": {split: _train_pairs(audit, [p[:2] for p in r["exact"] + r["near"]])
                                                       for split, r in result["leaks"].items()},
                              # (validation position, test position): the validation split's own indexing
                              "pairs_val_vs_test": [list(p) for p in val_pairs[:MAX_LISTED]]},
        facts={"n_leaked": n_leaked, "shift_search": result["shift_search"], "modality": audit.data.modality})
    record_finding(finding)


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
                                             for p in result["conflicting_labels"][:MAX_LISTED]]},
        facts={"n_conflicting_labels": len(result["conflicting_labels"]), "modality": audit.data.modality})
    record_finding(finding)


@pytest.mark.swiglu_audit_check(TEST_DUPLICATES)
def test_test_duplicates(audit, record_finding):
    policy, result = audit.config.policy, measure.integrity(audit)
    pairs = sorted({(i, j) for i, j in result["test_within_exact"]} | {(i, j) for i, j, _ in result["test_within_near"]})
    duplicated = sorted({j for _, j in pairs})
    n = result["n_test"]
    distinct, narrowed = copies_inflation(pairs, n)
    record_finding(judged_finding(
        TEST_DUPLICATES, [], len(duplicated) / n, policy,
        f"share of test samples that duplicate an earlier one ({len(duplicated)} of {n}; about {distinct} distinct)",
        subject=audit.data.name,
        details={"indices": duplicated[:MAX_LISTED],  # positions in the test split
                 "pairs": [list(p) for p in pairs[:MAX_LISTED]], "distinct_inputs": distinct,
                 # if the copies are one input each: the example part of every interval is this
                 # many times too narrow (the seeds' part is not)
                 "example_part_too_narrow_by": round(narrowed, 3)},
        facts={"modality": audit.data.modality}))


@pytest.mark.swiglu_audit_check(LABEL_ERRORS)
def test_label_errors(audit, record_finding):
    # measured apart from leakage and duplicates: its failure is this finding's alone
    policy, issues = audit.config.policy, measure.label_errors(audit)
    share = len(issues["indices"]) / issues["n_train"]
    record_finding(judged_finding(
        LABEL_ERRORS, [], share, policy, f"share of likely label errors ({len(issues['indices'])} samples)",
        subject=audit.data.name,
        details={"index_space": _index_space(audit),
                 "indices": audit.data.source_train_indices(issues["indices"][:MAX_LISTED]),
                 "suggested_labels": issues["suggested"][:MAX_LISTED],
                 "given_label_probability": issues["given_probability"][:MAX_LISTED],
                 "n_folds": issues["n_folds"]}))
