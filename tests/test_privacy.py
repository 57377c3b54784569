"""The privacy suite: the attack metrics against scikit-learn and by hand, the members and the
reference halves, and, through the user contract, a model that memorises its training set (over-
parameterised, trained long, no regularisation) against one that is regularised."""

import json

import numpy as np
import pytest
from conftest import TINY_AUDIT_TOML

from swiglu_audit.config import OPT_ENABLE
from swiglu_audit.methods.privacy import (
    attack_metrics,
    auroc,
    member_split,
    reference_halves,
    resolvable,
    rmia_scores,
    tpr_at_fpr,
)


def test_auroc_is_scikit_learns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    members, non = rng.integers(0, 5, 300).astype(float), rng.integers(0, 4, 200).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[members, non])
    assert auroc(members, non) == pytest.approx(expected, abs=1e-12)


def test_tpr_at_fpr_by_hand():
    non = np.arange(100, dtype=float)  # 0..99
    members = np.array([98.5, 99.5, 100.0, 50.0])
    # 1% of 100 non-members: one false positive allowed, the threshold is the second largest (98)
    assert tpr_at_fpr(members, non, 0.01) == 0.75
    # 0.1% of 100 is below one record: no false positive at all, strictly above the largest
    assert tpr_at_fpr(members, non, 0.001) == 0.5
    assert not resolvable(0.001, 100) and resolvable(0.01, 100)


def test_members_and_non_members_come_in_equal_numbers_and_references_take_complementary_halves():
    members, non = member_split(1000, 700, seed=0)
    assert len(members) == len(non) == 700 and len(set(members)) == 700 and members.max() < 1000
    halves = reference_halves(11, 4, seed=0)
    assert halves.shape == (4, 11)
    assert (halves[0] ^ halves[1]).all() and (halves[2] ^ halves[3]).all()  # each record in exactly 2 of 4
    assert set(halves.sum(0)) == {2}


def test_rmia_calibrates_each_record_by_the_reference_models_that_did_not_train_on_it():
    # record 0 is easy for every model (no evidence of membership); record 1 only for the target
    # and for the reference that trained on it
    target = np.log(np.array([[0.99, 0.99]]))
    refs = np.log(np.array([[0.99, 0.95], [0.98, 0.2]]))
    trained_on = np.array([[False, True], [True, False]])
    scores = rmia_scores(target, refs, trained_on)
    p_out = np.array([0.99, 0.2])  # record 0: reference 0 is its OUT model; record 1: reference 1
    assert np.allclose(np.exp(scores[0]), 0.99 / ((1.3 * p_out + 0.7) / 2))
    assert scores[0, 1] > scores[0, 0] + np.log(1.5)
    # the loss threshold cannot tell them apart; RMIA gives the easy record no credit
    result = attack_metrics(scores, np.array([False, True]), n_boot=20, seed=0)
    assert result["auroc"][0] == 1.0
    with pytest.raises(ValueError, match="did not train on it"):
        rmia_scores(target, refs, np.ones((2, 2), bool))


def test_confident_records_are_not_rounded_into_ties():
    import torch

    from swiglu_audit.measure.privacy import true_label_margin

    # margins of 20 and 25 logits: a float32 softmax gives both p = 1.0 exactly
    logits = torch.tensor([[20.0, 0.0, 0.0], [25.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert torch.softmax(logits, 1)[0, 0] == torch.softmax(logits, 1)[1, 0] == 1.0
    identity = torch.nn.Linear(3, 3, bias=False)
    torch.nn.init.eye_(identity.weight)  # a "model" whose logits are its inputs
    margin = true_label_margin(identity, logits, torch.tensor([0, 0, 0]), torch.device("cpu"))
    assert margin[0] == pytest.approx(20 - np.log(2)) and margin[1] > margin[0] > margin[2]


def test_the_metrics_resample_members_and_non_members_apart():
    rng = np.random.default_rng(1)
    scores = rng.random((2, 400))
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    scores[:, :200] += 0.3  # members score higher
    r = attack_metrics(scores, is_member, n_boot=50, seed=0)
    assert r["auroc_replicates"].shape == (2, 50) and r["n_members"] == r["n_non_members"] == 200
    assert 0.7 < r["auroc"].mean() < 0.85 and abs(r["auroc_replicates"].mean() - r["auroc"].mean()) < 0.02
    again = attack_metrics(scores, is_member, n_boot=50, seed=0)
    assert np.array_equal(again["tpr_at_0.01_replicates"], r["tpr_at_0.01_replicates"])  # shared by the models compared


# Tabular data whose labels a rule gives, with a quarter of them flipped at random: a model can
# only fit the flipped ones by remembering them.
NOISY_DATA = '''
import numpy as np

def load():
    rng = np.random.default_rng(0)
    n = 1200
    x = rng.random((n, 10)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 1.0).astype("int64")
    flip = rng.random(n) < 0.25
    y[flip] = 1 - y[flip]
    return {"x_train": x[:600], "y_train": y[:600], "x_val": x[600:900], "y_val": y[600:900],
            "x_test": x[900:], "y_test": y[900:], "name": "noisy-labels"}
'''

PRIVACY_MODELS = '''
from torch import nn

class Memoriser(nn.Module):
    """Over-parameterised (one wide layer: cheap to train, room to memorise), no regularisation."""
    def __init__(self, n_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(10, 2048), nn.ReLU(),
                                 nn.Linear(2048, n_classes))
    def forward(self, x):
        return self.net(x)

class Regularised(nn.Module):
    """Small, with dropout."""
    def __init__(self, n_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(10, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, n_classes))
    def forward(self, x):
        return self.net(x)

def make_memoriser(n_classes):
    return Memoriser(n_classes)

def make_regularised(n_classes):
    return Regularised(n_classes)
'''


def test_a_model_that_memorises_fails_and_a_regularised_one_does_not(tiny_project):
    tiny_project.makepyfile(noisydata=NOISY_DATA, privacymodels=PRIVACY_MODELS)
    tiny_project.syspathinsert()
    tiny_project.makefile(".toml", pyproject=(
        TINY_AUDIT_TOML.replace("[tool.swiglu_audit]\n", '[tool.swiglu_audit]\ndataset = "noisydata:load"\n', 1)
        .replace("[tool.swiglu_audit.training]\nepochs = 4", "[tool.swiglu_audit.training]\nepochs = 100\nweight_decay = 0.0")
        + '\n[[tool.swiglu_audit.models]]\nname = "memoriser"\nfactory = "privacymodels:make_memoriser"\nrole = "candidate"\n'
        + '\n[[tool.swiglu_audit.models]]\nname = "regularised"\nfactory = "privacymodels:make_regularised"\n'
        + "\n[tool.swiglu_audit.privacy]\nreference_models = 4\n"))
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "membership")
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    leaky, tight = found["privacy.membership_inference[memoriser]"], found["privacy.membership_inference[regularised]"]
    assert leaky["status"] == "FAIL", leaky["reason"]
    assert tight["status"] != "FAIL", tight["reason"]
    assert "an attacker who holds a record tells it was in training with TPR" in leaky["reason"]
    # the strong attack beats the loss threshold on the memoriser, whose easy records it discounts
    assert leaky["details"]["rmia"]["auroc"]["value"] > leaky["details"]["loss_threshold"]["auroc"]["value"]
    assert found["privacy.membership_inference_vs_baseline[memoriser-vs-regularised]"]["status"] == "FAIL"
    assert doc["plan"]["models"][0]["trainings"]["privacy reference"] == 4


def test_the_vectorised_metrics_are_the_plain_ones():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 50, (2, 300)).astype(float)  # ties
    is_member = rng.random(300) < 0.5
    r = attack_metrics(scores, is_member, n_boot=5, seed=0)
    for s, row in enumerate(scores):
        assert r["auroc"][s] == pytest.approx(auroc(row[is_member], row[~is_member]), abs=1e-12)
        for fpr in (0.01, 0.001):
            assert r[f"tpr_at_{fpr:g}"][s] == tpr_at_fpr(row[is_member], row[~is_member], fpr)


def test_the_resampled_metrics_are_the_plain_ones_on_each_resample():
    from swiglu_audit.methods.privacy import _counts, _resampled

    rng = np.random.default_rng(3)
    members, non = rng.integers(0, 40, 120).astype(float), rng.integers(0, 35, 150).astype(float)  # ties
    m_draws, n_draws = rng.integers(0, 120, (6, 120)), rng.integers(0, 150, (6, 150))
    got = _resampled(members, non, _counts(m_draws, 120), _counts(n_draws, 150))
    for b in range(6):
        assert got["auroc"][b] == pytest.approx(auroc(members[m_draws[b]], non[n_draws[b]]), abs=1e-12)
        for fpr in (0.01, 0.001):
            assert got[f"tpr_at_{fpr:g}"][b] == pytest.approx(tpr_at_fpr(members[m_draws[b]], non[n_draws[b]], fpr))


def test_the_membership_finding_judges_the_attack_whose_interval_gives_the_worse_verdict():
    """Either attack is a lower bound on the leak: a PASS must hold for both intervals, so a
    stronger point estimate inside the limit does not outrank a weaker one whose interval crosses it."""
    import importlib.util
    from types import SimpleNamespace

    from swiglu_audit.checks.privacy import MEMBERSHIP_INFERENCE
    from swiglu_audit.pytest.plugin import suites_dir
    from swiglu_audit.verdicts.stats import Estimate

    spec = importlib.util.spec_from_file_location("suite_privacy_under_test", suites_dir() / "suite_privacy.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    key = MEMBERSHIP_INFERENCE.condition.key
    audit = SimpleNamespace(config=SimpleNamespace(policy={key: 0.1}))
    narrow = Estimate(0.08, 0.07, 0.09, 0.95, 3, 400)  # the larger estimate, wholly inside the limit
    wide = Estimate(0.06, 0.01, 0.14, 0.95, 3, 400)  # smaller, but its interval crosses the limit
    assert suite._severity(audit, wide) > suite._severity(audit, narrow)
    assert suite._severity(audit, Estimate(0.3, 0.2, 0.4, 0.95, 3, 400)) > suite._severity(audit, wide)
