"""The fairness suite: each metric against fairlearn's own computation on the same predictions,
the per-class disparity by hand, the groups contract, and, through the user contract, a model
built to serve one group worse against the same architecture that is not."""

import json

import numpy as np
import pytest
from conftest import TINY_AUDIT_TOML

from swiglu_audit.config import OPT_ENABLE
from swiglu_audit.errors import DataContractError
from swiglu_audit.methods.fairness import (
    class_disparity,
    fairlearn_report,
    group_disparity,
    group_metrics,
    stratified_resamples,
    stratum_means,
)


def _predictions(n_classes: int, n: int = 900, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n)
    y = rng.integers(0, n_classes, n)
    # group 2 is served worse: its predictions are right less often
    right = rng.random(n) < np.where(groups == 2, 0.6, 0.9)
    pred = np.where(right, y, rng.integers(0, n_classes, n))
    return y, pred, groups


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_group_without_a_class_counts_its_rates_as_fairlearn_does(n_classes):
    y, pred, groups = _predictions(n_classes, seed=5)
    lacking = groups == 1
    y[lacking & (y == n_classes - 1)] = 0  # group 1 has no positives of the last class
    ours = group_metrics(y, pred, groups, 3, n_classes)
    theirs = fairlearn_report(y, pred, np.array(["a", "b", "c"])[groups], n_classes)
    for key in ("demographic_parity_difference", "equalized_odds_difference"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_an_always_right_small_group_is_not_an_exact_measurement():
    from swiglu_audit.verdicts.stats import replicate_comparison, replicate_estimate

    y = np.array([0, 1] * 30)
    groups = np.array([0] * 48 + [1] * 12)
    pred = y.copy()  # every model right on every input
    r = group_disparity(np.stack([pred, pred]), y, groups, 2, 2, n_boot=100, seed=0)
    assert (r["worst_group_accuracy_replicates"] == 1.0).all()  # resamples alone would say "exactly 1"
    est = replicate_estimate(r["worst_group_accuracy"], r["worst_group_accuracy_replicates"], 60,
                             bounds=(0.0, 1.0), floor=r["worst_group_accuracy_floor"])
    assert est.value == 1.0 and est.ci_low < 0.9  # 12 of 12 right is not proof of 100%
    tie = replicate_comparison(r["worst_group_accuracy"], r["worst_group_accuracy_replicates"],
                               r["worst_group_accuracy"], r["worst_group_accuracy_replicates"], 60,
                               floor=2 * r["worst_group_accuracy_floor"])
    assert tie.ci_low < -0.05  # two such models are no proof of non-inferiority at a 0.05 tolerance


@pytest.mark.parametrize("n_classes", [2, 4])
def test_group_metrics_are_fairlearns(n_classes):
    y, pred, groups = _predictions(n_classes)
    names = np.array(["a", "b", "c"])[groups]
    ours = group_metrics(y, pred, groups, 3, n_classes)
    theirs = fairlearn_report(y, pred, names, n_classes)
    for key in ("demographic_parity_difference", "equalized_odds_difference", "worst_group_accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
    assert ours["accuracy_by_group"] == pytest.approx([theirs["by_group"][g]["accuracy"] for g in "abc"])
    assert sum(v["size"] for v in theirs["by_group"].values()) == len(y)
    assert theirs["worst_group_accuracy"] == theirs["by_group"]["c"]["accuracy"]  # the group served worse


def test_class_disparity_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    outcomes = np.array([[1, 1, 1, 0, 0, 1, 1, 1, 1, 0],
                         [1, 0, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    r = class_disparity(outcomes, labels, 4, n_boot=200, seed=0)
    assert r["present"] == [0, 1, 2]  # class 3 has no test input: left out, not counted as 0
    assert np.allclose(r["per_class"][:, :3], [[1.0, 1 / 3, 0.8], [0.5, 1.0, 1.0]])
    assert np.allclose(r["worst"], [1 / 3, 0.5]) and np.allclose(r["gap"], [2 / 3, 0.5])
    assert r["worst_replicates"].shape == (2, 200)
    # every resample keeps each class's size, so a class is never missing from a replicate
    assert np.isfinite(r["worst_replicates"]).all() and (r["gap_replicates"] >= 0).all()


def test_stratified_resamples_keep_each_stratum_and_its_size():
    strata = np.array([0, 0, 0, 1, 1, 2])
    draws = stratified_resamples(strata, 50, seed=3)
    assert draws.shape == (50, 6)
    assert (strata[draws] == strata).all()
    assert np.array_equal(draws, stratified_resamples(strata, 50, seed=3))  # shared by the models compared


def test_group_disparity_intervals_come_from_resamples_around_the_per_seed_values():
    y, pred, groups = _predictions(2)
    r = group_disparity(np.stack([pred, pred]), y, groups, 3, 2, n_boot=200, seed=0)
    assert r["worst_group_accuracy"][0] == pytest.approx(group_metrics(y, pred, groups, 3, 2)["worst_group_accuracy"])
    reps = r["worst_group_accuracy_replicates"]
    assert reps.shape == (2, 200) and abs(reps.mean() - r["worst_group_accuracy"][0]) < 0.02
    assert np.isnan(stratum_means(np.ones((1, 4)), np.array([0, 0, 2, 2]), 3)[0, 1])  # an empty stratum: NaN, not 0


def test_groups_are_checked_where_they_are_given():
    import torch

    from swiglu_audit.training.data import _as_groups, groups_from_feature, load_digits_data

    with pytest.raises(DataContractError, match="one group label per test input"):
        _as_groups([0, 1, 0], 5, "factory")
    with pytest.raises(DataContractError, match="between 2 and"):
        _as_groups([1, 1, 1], 3, "factory")
    with pytest.raises(DataContractError, match=r"fewer than 10 test inputs: '1' \(3\)"):
        _as_groups([0] * 20 + [1] * 3, 23, "factory")
    assert _as_groups(torch.tensor([0] * 10 + [1] * 12), 22, "factory").tolist() == ["0"] * 10 + ["1"] * 12
    with pytest.raises(DataContractError, match="groups_test in the dataset instead"):
        groups_from_feature(load_digits_data(), 0)


@pytest.mark.parametrize("missing", [np.nan, None, "pandas.NA"])
def test_missing_group_labels_are_refused_not_made_a_group(missing):
    """NaN or None is no group: as a string it would become one, named "nan" or "None"."""
    import pandas as pd

    from swiglu_audit.training.data import _as_groups

    missing = pd.NA if missing == "pandas.NA" else missing
    groups = ["a"] * 12 + [missing] * 10 + ["b"] * 12
    for given in (groups, np.array(groups, dtype=object), pd.Series(groups)):
        with pytest.raises(DataContractError) as info:
            _as_groups(given, 34, "factory")
        assert info.value.problems == ["factory: groups_test has 10 missing value(s) (NaN or None), the first at test "
                                       "input 12; drop those inputs from the test split or give them a group label "
                                       "(an int or str)"]
    with pytest.raises(DataContractError, match="1 missing value"):  # a float array: NaN among group numbers
        _as_groups(np.r_[np.zeros(12), np.nan, np.ones(12)], 25, "factory")


# A tabular set whose group-1 labels the features predict worse (a fifth of them flipped), group
# named by feature 0; a model built to serve group 1 worse (it flips its own answer on half of that
# group once trained) and two that are not.
GROUP_DATA = '''
import numpy as np

def load():
    rng = np.random.default_rng(0)
    n = 1500
    x = rng.random((n, 6)).astype("float32")
    x[:, 0] = (rng.random(n) < 0.4).astype("float32")  # the group
    y = (x[:, 1] + x[:, 2] - x[:, 3] > 0.5).astype("int64")
    noisy = (x[:, 0] == 1) & (rng.random(n) < 0.2)
    y[noisy] = 1 - y[noisy]
    return {"x_train": x[:900], "y_train": y[:900], "x_val": x[900:1100], "y_val": y[900:1100],
            "x_test": x[1100:], "y_test": y[1100:], "name": "grouped"}
'''

GROUP_MODELS = '''
import torch
from torch import nn
from swiglu_audit.training.nn import ModelConfig, build_model

def _mlp(ffn, input_shape, n_classes):
    return build_model(ModelConfig(ffn=ffn, input_shape=input_shape, n_classes=n_classes, d_model=32, ffn_hidden=96))

class ServesGroupOneWorse(nn.Module):
    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.inner = _mlp("swiglu", input_shape, n_classes)
    def forward(self, x):
        logits = self.inner(x)
        if self.training:
            return logits
        flat = x.reshape(len(x), -1)
        hurt = (flat[:, 0] > 0.5) & (flat[:, 4] > 0.5)
        return torch.where(hurt[:, None], logits.flip(1), logits)

def make_unfair(input_shape, n_classes):
    return ServesGroupOneWorse(input_shape, n_classes)

def make_swiglu(input_shape, n_classes):
    return _mlp("swiglu", input_shape, n_classes)

def make_gelu(input_shape, n_classes):
    return _mlp("gelu", input_shape, n_classes)
'''

_GROUP_TESTS = "group_disparity or worst_group or group_parity"


def _group_audit(pytester, candidate: str, baseline: str) -> dict:
    """A tiny audit of the grouped set, the group tests only; its findings by id."""
    pytester.makepyfile(groupdata=GROUP_DATA, groupmodels=GROUP_MODELS)
    pytester.syspathinsert()
    factory = lambda name: f"groupmodels:make_{name.split('-')[0]}"
    pytester.makefile(".toml", pyproject=(
        TINY_AUDIT_TOML.replace("[tool.swiglu_audit]\n", '[tool.swiglu_audit]\ndataset = "groupdata:load"\n', 1)
        + f'\n[[tool.swiglu_audit.models]]\nname = "{candidate}"\nfactory = "{factory(candidate)}"\nrole = "candidate"\n'
        + f'\n[[tool.swiglu_audit.models]]\nname = "{baseline}"\nfactory = "{factory(baseline)}"\n'
        + "\n[tool.swiglu_audit.fairness]\ngroup_feature = 0\n"))
    pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", _GROUP_TESTS)
    doc = json.loads((pytester.path / "reports" / "report.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    found["html"] = (pytester.path / "reports" / "report.html").read_text()
    return found


def test_a_model_that_serves_a_group_worse_fails_the_amplification_check(tiny_project):
    found = _group_audit(tiny_project, "unfair-swiglu", "gelu-mlp")
    amplified = found["fairness.worst_group_accuracy_vs_baseline[unfair-swiglu-vs-gelu-mlp]"]
    assert amplified["status"] == "FAIL", amplified["reason"]
    assert amplified["value"] < -0.2
    unfair = found["fairness.group_disparity[unfair-swiglu]"]
    fair = found["fairness.group_disparity[gelu-mlp]"]
    # the groups came from feature 0, and fairlearn's own per-seed figures are in the details
    assert "feature 0" in unfair["details"]["groups_from"]
    assert len(unfair["details"]["by_group"]) == 2
    assert unfair["details"]["fairlearn_per_seed"][0]["worst_group_accuracy"] == pytest.approx(
        unfair["details"]["worst_group_accuracy"]["value"], abs=0.1)
    assert unfair["value"] > fair["value"] + 0.2  # equalised odds: the flipped answers open the gap
    assert found["fairness.group_parity_vs_baseline[unfair-swiglu-vs-gelu-mlp][equalized_odds]"]["status"] == "FAIL"
    assert 'aria-label="Per-group accuracy' in found["html"]  # every model's per-group plot


def test_a_pair_without_such_a_difference_does_not_fail(tiny_project):
    found = _group_audit(tiny_project, "swiglu-mlp", "gelu-mlp")
    pair = found["fairness.worst_group_accuracy_vs_baseline[swiglu-mlp-vs-gelu-mlp]"]
    assert pair["status"] != "FAIL", pair["reason"]
    # the group the features predict worse is the worst group of both models
    for model in ("swiglu-mlp", "gelu-mlp"):
        by_group = found[f"fairness.group_disparity[{model}]"]["details"]["by_group"]
        assert min(by_group, key=lambda g: g["value"])["group"] == "feature 0 = 1"


def test_without_groups_the_audit_reports_per_class_disparity_and_says_groups_were_not_given(tiny_audit_report):
    findings = [f for f in tiny_audit_report["findings"] if f["suite"] == "fairness"]
    assert {f["check"] for f in findings} == {"class_disparity", "worst_class_accuracy_vs_baseline"}
    accuracy = [f for f in findings if f["id"].endswith("[accuracy]") and f["check"] == "class_disparity"]
    assert len(accuracy) == 2
    for f in accuracy:
        assert f["ci_low"] <= f["value"] <= f["ci_high"] and len(f["details"]["per_class"]) == 10
        assert f["details"]["groups"].startswith("groups not given")
    rows = [r for r in tiny_audit_report["coverage"] if r["suite"] == "fairness" and not r["measured"]]
    assert rows and all("groups" in r["note"] for r in rows)


def test_a_class_gap_over_a_subset_missing_classes_or_of_a_masked_model_never_passes():
    """A test split sorted by class whose first inputs (the attacked ones) hold one class gave a
    robust gap of exactly 0, a PASS; a model whose masking checks fail has robust accuracies that
    are upper bounds. Both are at best WARN, and say why."""
    from swiglu_audit.checks.fairness import CLASS_DISPARITY, WORST_CLASS_COMPARISON
    from swiglu_audit.verdicts.risk import Status, apply_modifiers, make_finding

    passing = make_finding(CLASS_DISPARITY, ["m<x>"], Status.PASS, "measured", "t", value=0.0, ci=(0.0, 0.1))
    sound = {"missing_classes": [], "n_examples": 120, "masked_models": {"m<x>": []}}
    assert apply_modifiers(CLASS_DISPARITY, passing, sound, {}) is passing
    one_class = apply_modifiers(CLASS_DISPARITY, passing, {**sound, "missing_classes": [1, 2, 3]}, {})
    assert one_class.status == "WARN" and "no input of class(es) [1, 2, 3]" in one_class.reason
    masked = apply_modifiers(CLASS_DISPARITY, passing, {**sound, "masked_models": {"m<x>": ["zero gradients"]}}, {})
    assert masked.status == "WARN" and "'m<x>' (zero gradients)" in masked.reason and "upper bound" in masked.reason
    pair = make_finding(WORST_CLASS_COMPARISON, ["c", "b"], Status.PASS, "measured", "t", value=0.0, ci=(-0.01, 0.02))
    facts = {"missing_classes": [], "n_examples": 120, "masked_models": {"c": [], "b": ["budget curve flat"]}}
    assert apply_modifiers(WORST_CLASS_COMPARISON, pair, facts, {}).status == "WARN"


NO_NINES_IN_TEST = '''
import numpy as np
from sklearn.datasets import load_digits

def load():
    d = load_digits()
    x, y = (d.images / 16.0).astype("float32")[:, None], d.target
    test = np.arange(1300, len(y))
    test = test[y[test] != 9]  # no 9 among the test inputs; the training split has them
    return {"x_train": x[:1300], "y_train": y[:1300], "x_test": x[test], "y_test": y[test], "n_classes": 10}
'''


def test_a_class_with_no_test_input_is_named_whatever_the_status(pytester, tmp_path, monkeypatch):
    """The per-class findings list the classes measured; one with no test input at all is named
    in the sentence, so that "the worst class" is not read as the worst of every class."""
    from conftest import audit_users_data

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _, doc = audit_users_data(pytester, "nonines", NO_NINES_IN_TEST, "load", "class_disparity", seeds=(0,))
    found = [f for f in doc["findings"] if f["check"] == "class_disparity"]
    assert found
    for f in found:
        assert "not measured: class 9, with no input among those measured" in f["reason"], f["reason"]
        assert f["details"]["classes_not_measured"] == [9] and f["status"] != "PASS"
