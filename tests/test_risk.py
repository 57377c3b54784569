import importlib
import pkgutil

import pytest

import swiglu_audit.checks
from swiglu_audit.checks import adversarial
from swiglu_audit.risk import (
    Ceiling,
    CheckInfo,
    Floor,
    Status,
    breaches_policy,
    judge_interval,
    judge_non_inferiority,
    make_finding,
    no_better_than,
    no_worse_than,
    rmf_data,
    severity,
    verdict,
)
from swiglu_audit.stats import Comparison

CHECK_MODULES = [importlib.import_module(f"swiglu_audit.checks.{m.name}")
                 for m in pkgutil.iter_modules(swiglu_audit.checks.__path__)]
ALL_CHECKS = [obj for mod in CHECK_MODULES for obj in vars(mod).values() if isinstance(obj, CheckInfo)]


def test_every_check_declares_tags_that_exist_in_the_rmf_data():
    assert len(ALL_CHECKS) >= 8
    for info in ALL_CHECKS:
        info.validate()  # raises on an unknown RMF ID, characteristic or attack class


def test_validate_rejects_an_unknown_rmf_id():
    bad = CheckInfo("s", "c", "t", "m", ("MEASURE 9.9",), "safe", "low", "e", "m")
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


def test_modifiers_move_a_status_one_way_only():
    base = make_finding(adversarial.WORST_CASE, ["m"], Status.PASS, "why", "rule")
    failing = make_finding(adversarial.WORST_CASE, ["m"], Status.FAIL, "why", "rule")
    assert no_better_than(base, Status.WARN, "masked").status == "WARN"
    assert no_better_than(failing, Status.WARN, "masked").status == "FAIL"
    assert no_worse_than(failing, Status.WARN, "timing").status == "WARN"
    assert no_worse_than(base, Status.WARN, "timing") is base


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
