"""The OOD suite's metrics, detectors, OOD sets, corruptions and calibration, against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from swiglu_audit.config import DEFAULT_CORRUPTIONS
from swiglu_audit.methods import ood_metrics
from swiglu_audit.methods.calibration import aurc, expected_calibration_error, risk_coverage
from swiglu_audit.methods.corruptions import CORRUPTION_MODALITY, CORRUPTIONS, SEVERITIES, corrupt
from swiglu_audit.methods.ood_detectors import KNN, OOD_DETECTORS, DetectorParams, Evidence, Mahalanobis, odin_scores
from swiglu_audit.methods.ood_sets import OOD_SETS, natural_patches, quadrant_shuffled, rotated

m = ood_metrics.metric


def test_a_perfect_separator_scores_auroc_1_and_fpr95_0():
    s_in, s_out = [0.9, 0.8, 0.95, 0.7], [0.1, 0.3, 0.2]
    assert m("auroc", s_in, s_out) == 1.0
    assert m("fpr95", s_in, s_out) == 0.0
    assert m("aupr_in", s_in, s_out) == 1.0 and m("aupr_out", s_in, s_out) == 1.0


def test_all_equal_scores():
    s_in, s_out = [0.5] * 4, [0.5] * 2
    assert m("auroc", s_in, s_out) == 0.5
    assert m("fpr95", s_in, s_out) == 1.0  # accepting 95% of ID accepts every OOD input
    assert m("aupr_in", s_in, s_out) == pytest.approx(4 / 6)  # the positive share
    assert m("aupr_out", s_in, s_out) == pytest.approx(2 / 6)


def test_metrics_by_hand_with_a_tie():
    s_in, s_out = [0.9, 0.5], [0.5, 0.2]
    assert m("auroc", s_in, s_out) == pytest.approx(0.875)  # 3 wins and one tie of 4 pairs
    # AUPR-IN: precision 1 at 0.9, 2/3 at 0.5 (two ID and one OOD at or above it)
    assert m("aupr_in", s_in, s_out) == pytest.approx((1 + 2 / 3) / 2)
    assert m("aupr_out", s_in, s_out) == pytest.approx((1 + 2 / 3) / 2)
    # both ID scores must be accepted: threshold 0.5, which also accepts one of two OOD inputs
    assert m("fpr95", s_in, s_out) == 0.5


def test_metrics_agree_with_scikit_learn_on_tied_random_scores():
    rng = np.random.default_rng(3)
    s_in = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounding makes many ties
    s_out = np.round(rng.normal(0.0, 1.0, 200), 1)
    labels = np.r_[np.ones(300), np.zeros(200)]
    scores = np.r_[s_in, s_out]
    assert m("auroc", s_in, s_out) == pytest.approx(roc_auc_score(labels, scores))
    assert m("aupr_in", s_in, s_out) == pytest.approx(average_precision_score(labels, scores))
    assert m("aupr_out", s_in, s_out) == pytest.approx(average_precision_score(1 - labels, -scores))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert m("fpr95", s_in, s_out) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_weights_are_resampling_counts():
    """A bootstrap replicate weighs each score by how often it was drawn: the same as repeating it."""
    rng = np.random.default_rng(0)
    s_in, s_out = np.round(rng.random(30), 1), np.round(rng.random(20), 1)  # with ties
    w_in, w_out = rng.integers(0, 4, (5, 30)).astype(float), rng.integers(0, 4, (5, 20)).astype(float)
    w_in[:, 0] += 1  # no replicate without any ID or OOD sample
    w_out[:, 0] += 1
    for name, fn in ood_metrics.WEIGHTED.items():
        got = fn(s_in, s_out, w_in, w_out)
        expected = [m(name, np.repeat(s_in, w_in[b].astype(int)), np.repeat(s_out, w_out[b].astype(int)))
                    for b in range(5)]
        assert got == pytest.approx(expected), name
        # counts as integers (as the bootstrap draws them) sum exactly as float64 does: the same bits
        assert np.array_equal(fn(s_in, s_out, w_in.astype(np.int32), w_out.astype(np.int32)), got), name


def test_the_resamples_drawn_once_are_those_a_fresh_generator_draws():
    """The bootstrap's counts are drawn once per size and seed and shared by every metric, detector
    and OOD set: each replicate is still what a generator seeded afresh gives for that call."""
    rng = np.random.default_rng(3)
    s_in, s_out = rng.normal(1, 1, (2, 50)), rng.normal(0, 1, (2, 70))
    for name in ood_metrics.METRICS:
        for seed in (0, 5):
            point, reps = ood_metrics._replicates(name, s_in, s_out, 300, seed)
            fresh_point, fresh_reps = ood_metrics.seed_bootstrap(name, s_in, s_out, 300, np.random.default_rng(seed))
            assert np.array_equal(point, fresh_point) and np.array_equal(reps, fresh_reps), (name, seed)
    # other seeds draw other resamples
    assert not np.array_equal(ood_metrics._replicates("auroc", s_in, s_out, 300, 0)[1],
                              ood_metrics._replicates("auroc", s_in, s_out, 300, 5)[1])


def test_estimate_and_paired_comparison():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(1, 1, (3, 100)), rng.normal(0, 1, (3, 80))
    est = ood_metrics.estimate("auroc", s_in, s_out, 0.95, 200)
    assert est.ci_low <= est.value <= est.ci_high and est.n_seeds == 3
    same = ood_metrics.compare("auroc", {"in": s_in, "out": s_out}, {"in": s_in, "out": s_out}, 0.95, 0.05, 200)
    assert same.difference == 0.0 and not same.significant
    better = ood_metrics.compare("auroc", {"in": s_in + 3, "out": s_out}, {"in": s_in, "out": s_out}, 0.95, 0.05, 200)
    assert better.difference > 0.1 and better.significant


def _evidence(logits=None, features=None):
    return Evidence(x=torch.zeros(1), logits=logits, model=None, device=torch.device("cpu"), features=features)


def test_logit_detectors_by_hand():
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    s = {name: OOD_DETECTORS[name](DetectorParams()).score(_evidence(logits)) for name in ("msp", "maxlogit", "energy")}
    assert s["msp"] == pytest.approx([math.exp(2) / (math.exp(2) + 1), 0.5])
    assert s["maxlogit"] == pytest.approx([2.0, 1.0])
    assert s["energy"] == pytest.approx([math.log(math.exp(2) + 1), math.log(2 * math.e)])


def test_odin_without_a_step_is_the_tempered_msp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    with torch.no_grad():
        expected = torch.softmax(model(x) / 10.0, 1).max(1).values.numpy()
    assert odin_scores(model, x, torch.device("cpu"), temperature=10.0, eps=0.0) == pytest.approx(expected, rel=1e-6)
    stepped = odin_scores(model, x, torch.device("cpu"), temperature=10.0, eps=0.01)
    assert (stepped >= expected - 1e-7).all()  # the step raises the tempered MSP


def test_feature_detectors_rank_a_class_centre_above_a_far_point():
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    feats = np.vstack([rng.normal(c, 0.5, (50, 3)) for c in centres])
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    probe = np.vstack([centres, [[0.0, 0.0, -6.0]]])  # the last one is in neither class's direction
    for detector in (Mahalanobis().fit(feats, labels), KNN(k=5).fit(feats, labels)):
        assert detector.needs == "features"
        s = detector.score(_evidence(features=probe))
        assert s[0] > s[2] and s[1] > s[2]
    maha = Mahalanobis().fit(feats, labels)
    assert maha.score_features(maha.means_[:1])[0] == pytest.approx(0.0)  # at a class mean: distance 0


def test_detector_registry_follows_one_protocol():
    """Every registered detector says what it reads, fits, and gives one finite score per input."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(6, 1, 2, 2)
    with torch.no_grad():
        logits = model(x)
    rng = np.random.default_rng(0)
    train, labels = rng.normal(size=(30, 5)), np.arange(30) % 3
    evidence = Evidence(x=x, logits=logits, model=model, device=torch.device("cpu"), features=rng.normal(size=(6, 5)))
    for name, make in OOD_DETECTORS.items():
        detector = make(DetectorParams(knn_k=3))
        assert detector.needs in ("logits", "model", "features"), name
        scores = detector.fit(train, labels).score(evidence)
        assert scores.shape == (6,) and np.isfinite(scores).all(), name


def test_ood_sets_keep_shape_and_range_and_are_seeded():
    x = torch.rand(10, 1, 8, 8)
    for ood_set in OOD_SETS:
        a, b = ood_set.build(x, 0), ood_set.build(x, 0)
        assert a.shape == x.shape and torch.equal(a, b)
        assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(rotated(x), torch.rot90(x, 1, (2, 3)))
    shuffled = quadrant_shuffled(x)
    assert torch.equal(shuffled[..., :4, 4:], x[..., :4, :4])  # top-left moved to top-right
    assert torch.equal(torch.sort(shuffled.flatten(1)).values, torch.sort(x.flatten(1)).values)
    assert natural_patches(torch.zeros(6, 3, 8, 8)).shape == (6, 3, 8, 8)
    assert not torch.equal(natural_patches(x, 0), natural_patches(x, 1))


def test_severity_zero_is_the_identity_and_severity_grows_the_change():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8)
    assert tuple(DEFAULT_CORRUPTIONS) == tuple(c for c in CORRUPTIONS if CORRUPTION_MODALITY[c] == "image")
    reference = torch.rand(200, 1, 8, 8)  # the training inputs the tabular shifts read statistics from
    for name in CORRUPTIONS:
        assert torch.equal(corrupt(x, name, 0, reference=reference), x)
        changes = []
        for s in SEVERITIES:
            y = corrupt(x, name, s, reference=reference)
            assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
            assert torch.equal(y, corrupt(x, name, s, reference=reference))  # seeded
            changes.append(float((y - x).abs().mean()))
        assert changes[0] > 0 and changes[-1] > changes[0], name
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "fog", 1)


def test_expected_calibration_error_by_hand():
    # two bins: confidence 0.9 with accuracy 0.5, confidence 0.6 with accuracy 1
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert expected_calibration_error([1.0, 1.0, 0.5, 0.5], [1, 1, 1, 0]) == pytest.approx(0.0)


def test_risk_coverage_by_hand_including_ties():
    coverage, risk = risk_coverage([0.9, 0.8, 0.7], [1, 0, 1])
    assert coverage == pytest.approx([1 / 3, 2 / 3, 1]) and risk == pytest.approx([0, 1 / 2, 1 / 3])
    assert aurc([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx((0 + 1 / 2 + 1 / 3) / 3)
    # all scores equal: every coverage has the expected risk of a random order, the error rate
    assert risk_coverage([0.5] * 4, [1, 0, 1, 1])[1] == pytest.approx([0.25] * 4)
    # errors ranked last: the area is the smallest possible
    assert aurc([0.9, 0.8, 0.1], [1, 1, 0]) < aurc([0.1, 0.8, 0.9], [1, 1, 0])


def test_aurc_of_many_rows_at_once_equals_each_row_alone_with_ties():
    from swiglu_audit.methods.calibration import aurc_rows

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 40):
        tied = rng.integers(0, 3, size=(6, n)).astype(float)  # few distinct scores: long tie groups
        for scores in (tied, rng.normal(size=(6, n))):
            correct = (rng.random((6, n)) > 0.3).astype(float)
            assert aurc_rows(scores, correct) == pytest.approx([aurc(s, c) for s, c in zip(scores, correct)])


def test_aurc_estimate_interval_holds_the_value():
    from swiglu_audit.methods.calibration import aurc_estimate

    rng = np.random.default_rng(0)
    correct = rng.random((2, 200)) > 0.2
    scores = correct + rng.normal(0, 1.0, (2, 200))  # confidence that partly knows its errors
    est = aurc_estimate(scores, correct, 0.95, 200)
    assert est.ci_low <= est.value <= est.ci_high and est.n_seeds == 2
    assert est.value < aurc(-scores[0], correct[0])  # better than the reversed ranking


def test_aurc_with_no_error_seen_is_not_proof_of_zero_risk():
    """40 inputs all right: every resample reads AURC 0 (the interval was [0, 0], a PASS), while one
    error ranked most confident would read 0.107. The floor makes the interval reach past
    max_aurc = 0.05 at 40 inputs, stays tight at 360, and leaves a well-ranked model's alone."""
    from swiglu_audit.methods.calibration import aurc_estimate, aurc_floor
    from swiglu_audit.verdicts.stats import share_floor

    rng = np.random.default_rng(0)
    one_first = np.ones(40)
    one_first[0] = 0
    assert aurc(-np.arange(40.0), one_first) == pytest.approx(sum(1 / j for j in range(1, 41)) / 40)  # 0.107
    perfect = aurc_estimate(rng.random((2, 40)), np.ones((2, 40)), 0.95, 200)
    assert perfect.value == 0.0 and 0.05 < perfect.ci_high < 0.107
    assert aurc_floor(0.0, 0.0, 40) == pytest.approx(share_floor(0, 40))
    assert aurc_estimate(rng.random((2, 360)), np.ones((2, 360)), 0.95, 200).ci_high < 0.01
    # errors ranked least confident: the floor sinks with the AURC per error, below the resampling's
    correct = np.ones(360)
    correct[:18] = 0
    scores = rng.normal(size=360) + 3 * correct
    value = aurc(scores, correct)
    assert aurc_floor(value, 18.0, 360) < share_floor(18, 360) / 10


def test_subpopulation_split_skips_a_one_hot_column_whose_quantile_keeps_nothing():
    """A 0/1 column with 15% ones has the largest variance, and its 0.8 quantile is 0: `x < 0`
    kept no training row, and the retraining divided by zero (ERROR)."""
    from swiglu_audit.measure.ood import subpopulation_split

    rng = np.random.default_rng(0)
    one_hot = (rng.random(400) < 0.15).astype(np.float32)
    narrow = rng.uniform(0, 0.5, 400).astype(np.float32)
    x = torch.from_numpy(np.c_[narrow, one_hot])
    assert int(x.var(0).argmax()) == 1 and float(torch.quantile(x[:, 1], 0.8)) == 0.0
    feature, threshold = subpopulation_split(x)
    kept = int((x[:, feature] < threshold).sum())
    assert feature == 0 and threshold == pytest.approx(float(np.quantile(narrow, 0.8)), rel=1e-5)
    assert 0 < kept < len(x)
    # a 0/1 column with more ones than the quantile's share splits: its ones are held out
    common = torch.from_numpy(np.c_[narrow, (rng.random(400) < 0.3).astype(np.float32)])
    assert subpopulation_split(common) == (1, 1.0)
    assert subpopulation_split(torch.from_numpy(np.c_[np.zeros(50), one_hot[:50] * 0])) is None


def test_corruption_checks_say_why_when_no_corruption_applies():
    from types import SimpleNamespace

    from swiglu_audit.measure.ood import corruptions_missing

    def audit(names, modality):
        return SimpleNamespace(config=SimpleNamespace(ood=SimpleNamespace(corruptions=tuple(names))),
                               data=SimpleNamespace(modality=modality))

    why = corruptions_missing(audit([], "image"))
    assert "no configured corruption applies to image data" in why and "corruptions: none" in why
    why = corruptions_missing(audit(["feature_noise"], "image"))
    assert "feature_noise, none of which applies" in why and "[tool.swiglu_audit.ood] corruptions" in why
    assert corruptions_missing(audit(["gaussian_noise"], "image")) is None
    assert corruptions_missing(audit([], "tabular")) is None  # tabular data gets the tabular corruptions


def test_a_perfect_separation_on_few_inputs_is_not_read_as_exact(monkeypatch):
    """10 in-distribution inputs against 20 OOD ones, every one ranked right: the bootstrap's
    resamples all give 1, which made an interval [1, 1] (and a PASS that claimed certainty); the
    floor, Hanley and McNeil's variance with one pseudo-input of each side ranked wrong, leaves
    the low end near 0.85. A detector that errs often is judged by its own resamples."""
    from swiglu_audit.methods.ood_metrics import auroc_variance_floor, estimate

    rng = np.random.default_rng(0)
    perfect = estimate("auroc", rng.uniform(1, 2, (2, 10)), rng.uniform(0, 1, (2, 20)), 0.95, 200)
    assert perfect.value == 1.0 and perfect.ci_high == 1.0
    assert 0.80 < perfect.ci_low < 0.90
    # Hanley and McNeil at A = 200 / 231, by hand
    a = 200 / 231
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    assert auroc_variance_floor(10, 20) == pytest.approx((a * (1 - a) + 9 * (q1 - a * a) + 19 * (q2 - a * a)) / 200)
    # overlapping scores: the resamples vary more than the floor, which then changes nothing
    s_in, s_out = rng.normal(0.7, 1, (2, 200)), rng.normal(0, 1, (2, 200))
    with_floor = estimate("auroc", s_in, s_out, 0.95, 200)
    assert 0.6 < with_floor.value < 0.8
    monkeypatch.setattr(ood_metrics, "auroc_variance_floor", lambda n_in, n_out: 0.0)
    without = estimate("auroc", s_in, s_out, 0.95, 200)
    assert (with_floor.ci_low, with_floor.ci_high) == (without.ci_low, without.ci_high)
