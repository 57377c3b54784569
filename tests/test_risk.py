import importlib
import pkgutil

import pytest

import swiglu_audit.checks
from swiglu_audit.checks import adversarial
from swiglu_audit.risk import CheckInfo, Status, breaches_policy, judge_ceiling, judge_drop, judge_floor, make_finding, rmf_data, severity, verdict
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


def _cmp(diff, lo, hi, p):
    return Comparison(0.5 + diff, 0.5, diff, lo, hi, p, 0.95, 0.05, 3, 100)


def test_judge_drop_fails_only_significant_drops_beyond_the_threshold():
    assert judge_drop(_cmp(-0.02, -0.04, 0.0, 0.3), 0.05, "acc", "k")[0] is Status.PASS
    status, reason = judge_drop(_cmp(-0.2, -0.3, -0.1, 0.001), 0.05, "acc", "k")
    assert status is Status.FAIL and "k = 0.05" in reason and "significant" in reason
    assert judge_drop(_cmp(-0.2, -0.5, 0.1, 0.2), 0.05, "acc", "k")[0] is Status.WARN


def test_floor_and_ceiling_sentences_name_the_threshold():
    status, reason = judge_floor(0.2, 0.3, Status.WARN, "robust accuracy", "warn_below")
    assert status is Status.WARN and "warn_below = 0.3" in reason
    status, reason = judge_ceiling(0.5, 0.01, Status.FAIL, "flip rate", "max_flip")
    assert status is Status.FAIL and "max_flip = 0.01" in reason


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
