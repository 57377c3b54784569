import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import swiglu_audit.checks
from swiglu_audit.checks import adversarial, data_integrity, poison_detection
from swiglu_audit.verdicts.conditions import DecisionTable, Rule, always, capped, floored
from swiglu_audit.verdicts.risk import (
    Ceiling,
    CheckInfo,
    Floor,
    Status,
    apply_modifiers,
    breaches_policy,
    comparison_finding,
    decided_finding,
    judge_interval,
    judge_non_inferiority,
    judged_finding,
    make_finding,
    rmf_data,
    severity,
    verdict,
)
from swiglu_audit.verdicts.stats import Comparison

CHECK_MODULES = [importlib.import_module(f"swiglu_audit.checks.{m.name}")
                 for m in pkgutil.iter_modules(swiglu_audit.checks.__path__)]
ALL_CHECKS = [obj for mod in CHECK_MODULES for obj in vars(mod).values() if isinstance(obj, CheckInfo)]


def test_every_check_declares_tags_that_exist_in_the_rmf_data():
    assert len(ALL_CHECKS) >= 8
    for info in ALL_CHECKS:
        info.validate()  # raises on an unknown RMF ID, characteristic or attack class


def test_validate_rejects_an_unknown_rmf_id():
    bad = CheckInfo(suite="s", check="c", title="t", metric="m", rmf=("MEASURE 9.9",), characteristic="safe",
                    impact="low", explanation="e", mitigation="m", condition=Floor("k", "q"))
    with pytest.raises(ValueError, match="MEASURE 9.9"):
        bad.validate()


def test_rmf_ids_are_written_as_nist_writes_them():
    for rid in rmf_data()["subcategories"]:
        function, number = rid.split(" ")
        assert function in ("GOVERN", "MAP", "MEASURE", "MANAGE") and number.replace(".", "").isdigit()
    assert len(rmf_data()["characteristics"]) == 7


def test_severity_follows_sp800_30_matrix():
    assert severity("very high", "very high") == "very high"
    assert severity("high", "moderate") == "moderate"
    assert severity("very low", "very high") == "low"
    assert severity("low", "low") == "low"
    assert severity("very low", "very low") == "very low"


def _cmp(diff, lo, hi, p=0.5, seeds=3):
    return Comparison(0.5 + diff, 0.5, diff, lo, hi, p, 0.95, 0.05, seeds, 100, 0.01, 0.0001, 4.0)


@pytest.mark.parametrize("lo, hi, expected", [
    (-0.05, 0.02, Status.PASS),     # the whole interval at or above -tolerance: non-inferior
    (-0.0501, 0.02, Status.WARN),   # reaches just past the tolerance: inconclusive, whatever the point
    (-0.3, -0.0501, Status.FAIL),   # the whole interval beyond the tolerance
    (-0.3, -0.05, Status.WARN),     # touches the tolerance: not wholly beyond it
    (-0.2, 0.3, Status.WARN),       # wide: inconclusive
])
def test_non_inferiority_decides_by_the_whole_interval_at_the_boundaries(lo, hi, expected):
    assert judge_non_inferiority(_cmp((lo + hi) / 2, lo, hi), 0.05, "acc", "k")[0] is expected


def test_a_point_estimate_inside_the_tolerance_never_passes_on_its_own():
    """The case the issue found: -0.036 [-0.085, +0.010] at tolerance 0.05 was a PASS."""
    status, reason = judge_non_inferiority(_cmp(-0.036, -0.085, 0.010), 0.05, "robust accuracy", "max_drop")
    assert status is Status.WARN and "inconclusive" in reason and "max_drop = 0.05" in reason
    # it names what would decide it: here the examples' own noise (example variance 1e-4) is too large
    assert "more test examples needed" in reason


def test_lower_is_better_mirrors_the_rule():
    assert judge_non_inferiority(_cmp(0.0, -0.02, 0.05), 0.05, "asr", "k", higher_is_better=False)[0] is Status.PASS
    assert judge_non_inferiority(_cmp(0.0, -0.02, 0.051), 0.05, "asr", "k", higher_is_better=False)[0] is Status.WARN
    assert judge_non_inferiority(_cmp(0.2, 0.06, 0.3), 0.05, "asr", "k", higher_is_better=False)[0] is Status.FAIL


def test_one_seed_per_architecture_cannot_show_non_inferiority():
    status, reason = judge_non_inferiority(_cmp(0.0, -0.01, 0.01, seeds=1), 0.05, "acc", "k")
    assert status is Status.WARN and "one seed" in reason


@pytest.mark.parametrize("ci, expected", [((0.30, 0.5), Status.PASS), ((0.29, 0.5), Status.WARN),
                                          ((0.1, 0.299), Status.FAIL), (None, Status.PASS)])
def test_floors_judge_the_interval(ci, expected):
    assert judge_interval(0.4 if ci is None else sum(ci) / 2, ci, 0.3, True, Status.FAIL) is expected


def test_floor_and_ceiling_sentences_name_the_threshold_and_the_interval():
    policy = {"warn_below": 0.8, "max_flip": 0.01}
    status, reason, threshold = Floor("warn_below", "AUROC").judge(0.872, policy, "AUROC", ci=(0.721, 1.0), level=0.95)
    assert status is Status.WARN and "inconclusive" in reason and "warn_below = 0.8" in reason
    assert "the whole interval" in threshold
    status, reason, _ = Ceiling("max_flip", "flip rate", breached=Status.FAIL).judge(0.5, policy, "flip rate")
    assert status is Status.FAIL and "max_flip = 0.01" in reason and "above" in reason


def test_every_check_declares_the_condition_that_judges_it():
    """One way to judge (DESIGN.md section 3): no check is judged inline by its suite."""
    assert len(ALL_CHECKS) >= 30
    missing = [info.check for info in ALL_CHECKS if info.condition is None]
    assert missing == []
    for info in ALL_CHECKS:
        for modifier in info.modifiers:
            assert modifier.name and isinstance(modifier.needs, tuple)


SUITES = Path(__file__).resolve().parents[1] / "suites"
# what would let a suite set a status itself: the builders that take one, and the Status enum
_STATUS_SETTERS = {"Status", "make_finding", "with_status", "judge_interval", "no_better_than", "no_worse_than"}


def test_no_suite_assigns_a_status():
    offenders = []
    for path in sorted(SUITES.glob("suite_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                offenders += [f"{path.name} imports {a.name}" for a in node.names if a.name in _STATUS_SETTERS]
            if isinstance(node, ast.Attribute) and node.attr == "status" and isinstance(node.ctx, ast.Store):
                offenders.append(f"{path.name}:{node.lineno} sets .status")
    assert offenders == []


def test_modifiers_move_a_status_one_way_only_and_only_when_their_evidence_holds():
    at_best = capped("masked", ("masked",), Status.WARN, lambda f, p: "masked" if f["masked"] else None,
                     note=lambda f, p: "note: masked")
    at_worst = floored("timing", (), Status.WARN, lambda f, p: "a timing")
    info = CheckInfo(suite="s", check="c", title="t", metric="m", rmf=("MEASURE 2.7",), characteristic="safe",
                     impact="low", explanation="e", mitigation="m", condition=Floor("k", "q"),
                     modifiers=(at_best, at_worst))
    passing = make_finding(info, ["m"], Status.PASS, "why", "rule")
    failing = make_finding(info, ["m"], Status.FAIL, "why", "rule")
    capped_pass = apply_modifiers(info, passing, {"masked": True}, {})
    assert capped_pass.status == "WARN" and capped_pass.reason.endswith("masked")
    assert capped_pass.details["judged"]["modified_by"] == ["masked"]
    kept = apply_modifiers(info, passing, {"masked": False}, {})
    assert kept.status == "PASS" and kept.reason == "why"
    floored_fail = apply_modifiers(info, failing, {"masked": True}, {})  # cap notes it, floor lowers it
    assert floored_fail.status == "WARN" and "note: masked" in floored_fail.reason and "a timing" in floored_fail.reason
    with pytest.raises(KeyError, match="masked"):  # a suite that did not measure the facts
        apply_modifiers(info, passing, {}, {})


def test_a_decision_table_decides_by_its_first_holding_rule_and_must_end_with_always():
    table = DecisionTable(threshold=lambda f, p: "x < limit",
                          rules=(Rule(Status.FAIL, lambda f, p: f["x"] >= p["limit"], lambda f, p: "too big"),
                                 Rule(Status.PASS, always, lambda f, p: "small")))
    assert table.judge({"x": 3}, {"limit": 2})[:2] == (Status.FAIL, "too big")
    assert table.judge({"x": 1}, {"limit": 2})[:2] == (Status.PASS, "small")
    with pytest.raises(ValueError, match="always"):
        DecisionTable(threshold=lambda f, p: "", rules=(Rule(Status.PASS, lambda f, p: True, lambda f, p: ""),))


_FOUND = {"target_found": True, "recall": 1.0, "precision": 0.9, "learned": 0.93}
_POWER = {"rate": 0.03, "target": 0, "kinds": {"corner_patch": _FOUND, "blend": _FOUND}}
_SCAN_POLICY = {"min_trigger_anomaly_index": 2.0, "min_scan_recall": 0.5}


def _scan(**facts):
    return _scan_finding(**facts).status


def _scan_finding(**facts):
    base = {"power": _POWER, "target": None, "n_flagged": 0, "share": 0.0, "anomaly_index": 1.0, "mask_l1": None,
            "trigger_success": 0.0, "min_learned_backdoor": 0.5, "flagged_by_other_models": [], "likeness": 0.1,
            "n_carrying": 0}
    return decided_finding(poison_detection.SCAN, ["m"], {**base, **facts}, _SCAN_POLICY)


def _panel(**blend):
    return {**_POWER, "kinds": {"corner_patch": _FOUND, "blend": {**_FOUND, **blend}}}


def test_the_scan_decision_table_row_by_row():
    assert _scan(power=None, out_of_scope="pretrained", n_published=3) == "WARN"
    assert _scan(target=4, n_flagged=12, share=0.01, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9) == "FAIL"
    # samples that look like their class and carry a shared pattern: clean-label poison's signature,
    # which a natural shortcut can share: inconclusive
    clean_label = _scan_finding(target=4, n_flagged=12, share=0.01, anomaly_index=3.5, mask_l1=7.0,
                                trigger_success=0.9, likeness=0.8, n_carrying=5)
    assert clean_label.status == "WARN" and "they look like class 4 (80% as much" in clean_label.reason
    assert "cannot tell them apart" in clean_label.reason
    # ... that only rest on the class's own feature: a natural shortcut, set aside; the power decides
    natural = _scan_finding(target=4, n_flagged=12, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                            likeness=0.9)
    assert natural.status == "PASS" and "a natural shortcut, not counted as poison" in natural.reason
    assert _scan(target=4, n_flagged=12, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                 likeness=0.9, power=_panel(recall=0.2)) == "WARN"
    # where the class's own samples are not each other's neighbours, nothing can say: not a FAIL
    unknown = _scan_finding(target=4, n_flagged=12, share=0.01, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9,
                            likeness=None)
    assert unknown.status == "WARN" and "not each other's nearest neighbours" in unknown.reason
    # relabelled-looking samples on a recovered trigger are poison's signature whatever the class's
    # anomaly index (planted 3% backdoors on the shapes set: 1.9-2.5)
    assert _scan(target=4, n_flagged=12, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                 likeness=0.0) == "FAIL"
    assert _scan(target=4, n_flagged=12, share=0.01, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9,
                 likeness=0.15) == "FAIL"
    assert _scan(target=4, n_flagged=2, share=0.001, anomaly_index=3.5, mask_l1=7.0) == "WARN"  # a lead
    assert _scan(target=4, n_flagged=0, anomaly_index=3.5, mask_l1=7.0) == "WARN"  # anomalous, nothing on it
    assert _scan(target=4, n_flagged=0, anomaly_index=1.5, mask_l1=7.0) == "PASS"  # below the policy's index
    not_learned = {"target_found": False, "recall": 0.0, "precision": None, "not_learned": 0.02}
    assert _scan(power={**_POWER, "kinds": {"corner_patch": not_learned}}) == "WARN"
    assert _scan() == "PASS"


def test_nothing_found_passes_only_with_power_on_every_kind_of_the_panel():
    """One kind the scan misses, or one the model never learned, is enough for an inconclusive
    WARN; the reason names it and what the scan does find."""
    for weak, words in (({"recall": 0.2}, "the scan found only 20%"), ({"target_found": False}, "the scan did not find the target"),
                        ({"not_learned": 0.03, "target_found": False, "recall": 0.0}, "not learned")):
        finding = _scan_finding(power=_panel(**weak))
        assert finding.status == "WARN", weak
        assert "blend: " + words in finding.reason and "It does find corner_patch (recall 1.00" in finding.reason
    passed = _scan_finding()
    assert passed.status == "PASS"
    assert "corner_patch, blend" in passed.reason and "at 3% of the training set" in passed.reason
    assert "relabelled (dirty-label) backdoors of these kinds" in passed.reason and "clean-label poison" in passed.reason
    assert "as strongly as it learned the panel's (attack success above the base rate 0.93 or more)" in passed.reason
    # a kind whose planted poison the scan flags but would not call relabelled gives no power
    undecided = _scan_finding(power=_panel(decided=False))
    assert undecided.status == "WARN" and "would not call it relabelled" in undecided.reason


def test_a_relabelled_group_smaller_than_the_threat_needs_is_a_lead_not_a_fail():
    """min_scan_recall of the threat's poison: 3% of 1,078 rows, half of it, is 17 samples."""
    assert poison_detection.smallest_failing_group(0.03, 1078, 0.5) == 17
    assert poison_detection.smallest_failing_group(0.001, 1078, 0.5) == poison_detection.MIN_GROUP
    group = dict(target=2, share=0.008, anomaly_index=2.7, mask_l1=7.5, trigger_success=0.98, likeness=0.1,
                 min_fail_group=17)
    small = _scan_finding(**group, n_flagged=9)
    assert small.status == "WARN" and small.reason.startswith("a lead: class 2")
    assert _scan(**group, n_flagged=30) == "FAIL"
    assert "FAIL when at least 17 samples labelled with a class" in _scan_finding(**group, n_flagged=30).threshold


def test_a_models_nothing_found_cannot_stand_against_another_models_flags():
    assert _scan() == "PASS"
    assert _scan(flagged_by_other_models=["other-model"]) == "WARN"


def test_a_relabelled_subgroup_in_a_natural_looking_group_is_not_set_aside():
    """The median of a large natural group would hide a few relabelled samples: three or more that
    look like another class one by one keep the group from being set aside (inconclusive)."""
    natural = dict(target=4, n_flagged=20, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                   likeness=0.9, n_carrying=0)
    assert _scan(**natural, n_relabelled=0) == "PASS"
    hidden = _scan_finding(**natural, n_relabelled=5)
    assert hidden.status == "WARN" and "5 of them, one by one, look like another class" in hidden.reason
    # an anomalous trigger whose samples look like the class's own is not "nothing found" either
    assert _scan(**{**natural, "anomaly_index": 3.5}, n_relabelled=0) == "WARN"


_CENSUS_RULE = {"large_group": 10, "min_transfer": 0.25, "min_transfer_small": 0.5}
_CENSUS_NAMES_3 = {"target": 3, "rule": _CENSUS_RULE, "n_groups": 4, "n_flagged": 31, "transfer": 0.41, "base": 0.01,
                   "how": "stamped", "n_stamped": 3, "required": 0.25, "sources": {0: 5, 1: 4, 7: 22}}
_CENSUS_NAMES_NONE = {"target": None, "lead": None, "rule": _CENSUS_RULE, "n_groups": 2}
_CENSUS_LEAD_2 = {"target": None, "lead": 2, "rule": _CENSUS_RULE, "n_groups": 3, "n_flagged": 40, "transfer": 0.1,
                  "base": 0.0, "how": "stamped", "n_stamped": 2, "required": 0.25, "sources": {0: 20, 5: 20},
                  "next_largest": 9}


def test_the_relabel_census_fails_a_set_the_trigger_scan_passes_and_says_why():
    """A trigger over the strokes: the trigger scan names no class, the census names one."""
    finding = _scan_finding(census=_CENSUS_NAMES_3)
    assert finding.status == "FAIL"
    assert "31 training samples labelled 3 look like other classes (5 like class 0, 4 like class 1, 22 like class 7" in finding.reason
    assert "stamping the 3 values they hold in common sends 41% of them there" in finding.reason
    assert "25% needed for a group of this size" in finding.reason
    assert "at least 25% of them for a group of 10 or more, 50% for a smaller one" in finding.threshold
    # the census naming nothing leaves "nothing found" to the power, and the PASS sentence says so
    passed = _scan_finding(census=_CENSUS_NAMES_NONE)
    assert passed.status == "PASS" and "the relabel census" in passed.reason
    # the census naming nothing leaves the trigger scan's own FAIL standing
    assert _scan(target=4, n_flagged=12, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9, likeness=0.0,
                 census=_CENSUS_NAMES_NONE) == "FAIL"
    # where both name a class, the census's is the one the reason names (it tested that the model
    # obeys what the samples share; on tabular rows the trigger scan named a clean class)
    both = _scan_finding(target=4, n_flagged=12, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9, likeness=0.0,
                         census=_CENSUS_NAMES_3)
    assert both.status == "FAIL" and "labelled 3 look like other classes" in both.reason


def test_a_census_group_that_stands_out_but_moves_too_few_inputs_is_a_lead_never_a_pass():
    """A backdoor the model learned weakly (attack success 0.18-0.42 in BENCHMARKS.md): the group
    is far larger than any other class's, what it shares moves some inputs, not enough to FAIL."""
    lead = _scan_finding(census=_CENSUS_LEAD_2)
    assert lead.status == "WARN" and lead.reason.startswith("a lead: 40 training samples labelled 2")
    assert "against at most 9 in any other class" in lead.reason and "moves 10% of other classes' inputs" in lead.reason
    # nor does it let a natural-looking group of the trigger scan be set aside
    natural = dict(target=2, n_flagged=20, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                   likeness=0.9, n_carrying=0, n_relabelled=5)
    assert not poison_detection.natural_shortcut({**natural, "census": _CENSUS_LEAD_2})
    # the trigger scan's own FAIL still comes before the lead
    assert _scan(target=4, n_flagged=12, anomaly_index=3.5, mask_l1=7.0, trigger_success=0.9, likeness=0.0,
                 census=_CENSUS_LEAD_2) == "FAIL"


def test_a_hidden_relabelled_subgroup_stays_inconclusive_whatever_the_census_says_of_the_class():
    """The census's median over a class's group can wash a few poisoned samples out: it never
    clears a subgroup the trigger scan found looking like another class one by one."""
    natural = dict(target=4, n_flagged=20, share=0.01, anomaly_index=1.5, mask_l1=7.0, trigger_success=0.9,
                   likeness=0.9, n_carrying=0, n_relabelled=5)
    assert _scan(**natural) == "WARN"
    assert _scan(**natural, census=_CENSUS_NAMES_NONE) == "WARN"
    assert not poison_detection.natural_shortcut({**natural, "census": _CENSUS_NAMES_NONE})
    # the census naming a class is never set aside, whatever the trigger scan's group looks like
    assert _scan(**natural, census=_CENSUS_NAMES_3) == "FAIL"
    assert not poison_detection.natural_shortcut({**{**natural, "n_relabelled": 0}, "census": _CENSUS_NAMES_3})
    # without a subgroup, a natural-looking group is set aside as before
    assert poison_detection.natural_shortcut({**{**natural, "n_relabelled": 0}, "census": _CENSUS_NAMES_NONE})


def test_census_facts_read_the_named_group_from_the_cached_summary():
    summary = {"target": 7, "rule": _CENSUS_RULE, "cohesion": {"7": 0.9},
               "groups": {"2": {"n": 4, "sources": {"5": 4}, "required": 0.5, "transfer": 0.1, "base": 0.0,
                                "how": "added", "n_stamped": 0, "transfers": {}, "perturbation_norm": 1.0},
                          "7": {"n": 30, "sources": {"1": 10, "4": 20}, "required": 0.25, "transfer": 0.8,
                                "base": 0.02, "how": "stamped", "n_stamped": 4, "transfers": {}, "perturbation_norm": 2.0}}}
    facts = poison_detection.census_facts(summary, 30)
    assert facts["target"] == 7 and facts["sources"] == {1: 10, 4: 20} and facts["transfer"] == 0.8
    assert facts["n_groups"] == 2 and facts["required"] == 0.25
    assert facts["next_largest"] == 4 and facts["lead"] is None
    assert poison_detection.census_facts({**summary, "target": None}, 0) == {"target": None, "lead": None,
                                                                             "rule": _CENSUS_RULE, "n_groups": 2}
    lead = poison_detection.census_facts({**summary, "target": None, "lead": 7}, 30)
    assert lead["lead"] == 7 and lead["transfer"] == 0.8 and lead["n_flagged"] == 30
    assert poison_detection.census_facts(None, 0) is None


def _set_verdict(*statuses_and_flags, set_aside=()):
    scans = [{"model": f"m{i}", "status": status, "reason": "why", "n_flagged": flagged, "suspected_target": None,
              "flagged": [], "scanned": status != "OUT", "set_aside": i in set_aside}
             for i, (status, flagged) in enumerate(statuses_and_flags)]
    return decided_finding(poison_detection.TRAINING_SET_VERDICT, [s["model"] for s in scans],
                           {"scans": scans, "threat": {"rate": 0.03, "kinds": ["corner_patch"]}}, _SCAN_POLICY).status


def test_one_verdict_per_training_set_from_every_models_scan():
    assert _set_verdict(("PASS", 0), ("FAIL", 12)) == "FAIL"  # whichever model found it
    assert _set_verdict(("PASS", 0), ("WARN", 3)) == "WARN"  # a lead
    assert _set_verdict(("PASS", 0), ("WARN", 0)) == "WARN"  # one scan could not show its power
    assert _set_verdict(("PASS", 0), ("ERROR", 0)) == "WARN"  # one model could not be scanned
    assert _set_verdict(("PASS", 0), ("PASS", 0)) == "PASS"
    assert _set_verdict(("PASS", 12), ("PASS", 0), set_aside=(0,)) == "PASS"  # a natural shortcut one scan set aside
    # set aside, but that scan's power fell short: inconclusive, not a lead
    assert _set_verdict(("WARN", 12), ("PASS", 0), set_aside=(0,)) == "WARN"
    assert _set_verdict() == "WARN"  # no scan, no verdict
    assert _set_verdict(("OUT", 0)) == "WARN"
    assert _set_verdict(("PASS", 0), ("OUT", 0)) == "PASS"  # a model out of the suite's scope did not scan


def test_own_class_likeness_is_relative_to_the_class_and_silent_where_neighbours_say_nothing():
    assert poison_detection.own_class_likeness([0.1, 0.1, 0.2], 0.9) == pytest.approx(0.1 / 0.9)
    assert poison_detection.own_class_likeness([0.3, 0.3, 0.4], 0.5) == pytest.approx(0.6)  # a tabular class's own
    assert poison_detection.own_class_likeness([0.1], 0.2) is None  # the class's samples are not each other's
    assert poison_detection.own_class_likeness([], 0.9) is None


def test_a_leak_is_never_a_pass_and_conflicting_duplicates_are_a_warn():
    policy = {"max_leakage_share": 0.05, "max_duplicate_share": 0.05}
    leak = judged_finding(data_integrity.LEAKAGE, [], 0.001, policy, "share", facts={"n_leaked": 1, "shift_search": {},
                                                                                     "modality": "image"})
    assert leak.status == "WARN" and "deserves a look" in leak.reason
    dup = judged_finding(data_integrity.DUPLICATES, [], 0.0, policy, "share",
                         facts={"n_conflicting_labels": 2, "modality": "image"})
    assert dup.status == "WARN" and "looked for:" not in dup.reason
    # a PASS within one split says the search had no mirror and no crops (leakage's has both)
    clean = judged_finding(data_integrity.TEST_DUPLICATES, [], 0.0, policy, "share", facts={"modality": "image"})
    assert clean.status == "PASS" and "shifted by up to 1 pixel; not for left-right mirror images, crops" in clean.reason
    assert "mirrored left to right," not in clean.reason


def test_indicative_warnings_never_fail_a_run():
    timing = {"status": "WARN", "details": {"indicative": True}}
    count = {"status": "WARN", "details": {}}
    assert verdict([timing, {"status": "PASS"}], fail_on_warn=True) == "WARN"
    assert verdict([timing, count], fail_on_warn=True) == "FAIL"
    assert not breaches_policy("WARN", fail_on_warn=True, indicative=True)


def test_finding_shape_and_policy():
    f = make_finding(adversarial.WORST_CASE, ["swiglu-mlp"], Status.FAIL, "why", "rule",
                     value=0.1, ci=(0.05, 0.15), ci_level=0.95)
    d = f.to_dict()
    assert d["rmf"] == ["MEASURE 2.7"] and d["attack_class"] == "evasion/white-box"
    assert d["severity"] == "high" and d["id"] == "adversarial.worst_case_robust_accuracy[swiglu-mlp]"
    assert breaches_policy("FAIL") and breaches_policy("ERROR") and not breaches_policy("WARN")
    assert breaches_policy("WARN", fail_on_warn=True)
    assert verdict(["PASS", "WARN"]) == "WARN" and verdict(["PASS", "FAIL", "ERROR"]) == "ERROR"
    assert verdict([]) == "NO FINDINGS"


@pytest.mark.parametrize("diff, lo, hi, masked, expected", [
    (-0.2, -0.3, -0.1, "baseline", Status.WARN),   # FAIL on a masked baseline: its robustness is an upper bound
    (-0.2, -0.3, -0.1, "candidate", Status.FAIL),  # a masked candidate is weaker still: the FAIL stands
    (-0.2, -0.3, -0.1, None, Status.FAIL),
    (0.05, 0.0, 0.1, "baseline", Status.WARN),     # masked evidence never passes (DESIGN.md section 8)
    (0.05, 0.0, 0.1, "candidate", Status.WARN),
])
def test_a_worst_case_comparison_reads_a_masked_model_as_an_upper_bound(diff, lo, hi, masked, expected):
    failed = {"cand": ["unbounded"] if masked == "candidate" else [], "base": ["unbounded"] if masked == "baseline" else []}
    finding = comparison_finding(adversarial.WORST_CASE_COMPARISON, ["cand", "base"], _cmp(diff, lo, hi, p=0.001),
                                 {"max_robust_accuracy_drop": 0.05}, "robust accuracy",
                                 facts={"masked_models": failed, "baseline": "base"})
    assert finding.status == expected.value
    if masked == "baseline" and diff < 0:
        assert "inconclusive, not FAIL: base's gradient-masking checks (unbounded)" in finding.reason


def test_a_floor_pass_on_models_trained_at_one_seed_is_inconclusive():
    from swiglu_audit.verdicts.risk import capped_for_one_seed

    policy = {"warn_below_robust_accuracy": 0.3}
    passing = judged_finding(adversarial.WORST_CASE, ["m"], 0.6, policy, "robust accuracy", ci=(0.55, 0.65), df=399.0,
                             facts={"masking_failures": [], "escalation": {}, "threat": "linf",
                                    "invalid_examples": {"out_of_budget": 0, "non_finite": 0}})
    assert passing.status == "PASS"
    capped = capped_for_one_seed(passing, ["m"])
    assert capped.status == "WARN" and "trained at one seed only" in capped.reason
    assert capped.details["judged"]["modified_by"] == ["one training seed"]
    assert capped_for_one_seed(passing, []).status == "PASS"  # several seeds, or loaded from weights
    failing = judged_finding(adversarial.WORST_CASE, ["m"], 0.1, policy, "robust accuracy", ci=(0.05, 0.15),
                             facts={"masking_failures": [], "escalation": {}, "threat": "linf",
                                    "invalid_examples": {"out_of_budget": 0, "non_finite": 0}})
    assert failing.status == "WARN" and capped_for_one_seed(failing, ["m"]) is failing  # it only lowers a PASS


def test_only_models_the_audit_trains_at_one_seed_are_named(tmp_path):
    from swiglu_audit.config import build_config
    from swiglu_audit.pytest.fixtures import trained_at_one_seed

    models = [{"name": "mine", "factory": "pkg:make", "role": "candidate"},
              {"name": "theirs", "factory": "pkg:make", "weights": "w.safetensors"}]
    one = build_config({"seeds": [0], "models": models, "cache_dir": str(tmp_path)})
    assert trained_at_one_seed(one, ["mine", "theirs"]) == ["mine"]
    several = build_config({"seeds": [0, 1], "models": models, "cache_dir": str(tmp_path)})
    assert trained_at_one_seed(several, ["mine", "theirs"]) == []


def test_a_finding_as_json_converts_what_asdict_did_without_copying_first():
    """Finding.to_dict no longer deep-copies through asdict (a third of a warm audit's cost of
    recording findings): a dataclass, a numpy scalar, a non-finite float and a lone surrogate in
    the details still come out as report.json can hold them."""
    import json
    import math

    import numpy as np

    from swiglu_audit.checks.adversarial import SANITY
    from swiglu_audit.verdicts.risk import Status, make_finding
    from swiglu_audit.verdicts.stats import Estimate

    estimate = Estimate(0.5, 0.4, 0.6, 0.95, 3, 100, 12.0)
    details = {"estimate": estimate, "nested": [{"x": np.float32(0.25)}, (math.nan, "\udcff")]}
    out = make_finding(SANITY, ["m"], Status.PASS, "r", "t", value=np.float64(0.5), details=details).to_dict()
    assert out["details"]["estimate"] == {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "level": 0.95,
                                          "n_seeds": 3, "n_examples": 100, "df": 12.0, "se": None}
    assert out["details"]["nested"] == [{"x": 0.25}, [None, "\\udcff"]] and out["value"] == 0.5
    json.dumps(out, allow_nan=False)
    out["details"]["nested"][0]["x"] = "changed"  # the output shares no container with the finding
    out["details"]["estimate"]["value"] = -1.0
    again = make_finding(SANITY, ["m"], Status.PASS, "r", "t", details=details).to_dict()
    assert details["nested"][0]["x"] == np.float32(0.25) and again["details"]["estimate"]["value"] == 0.5
