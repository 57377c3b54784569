"""The poisoning suite's building blocks on real data: attacks, detectors, integrity checks."""

import json

import numpy as np
import pytest
import torch
from conftest import audit_users_data

from swiglu_audit.config import build_config
from swiglu_audit.errors import ConfigError, ModelContractError
from swiglu_audit.methods.integrity import exact_duplicates, label_issues, near_duplicates
from swiglu_audit.methods.poison_detectors import DetectorOutput, activation_clustering, detection_metrics, run_detectors, spectral_signatures
from swiglu_audit.methods.poisoning import add_trigger, backdoor, targeted_flip
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.features import penultimate_features
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")
TARGET = 0


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _train(x, y, seed=0, ffn="swiglu"):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="mlp", ffn=ffn))
    train_model(model, x, y, Recipe(epochs=12), seed, CPU)
    return model


def _attack_success(model, digits):
    triggered = add_trigger(digits.x_test[digits.y_test != TARGET], 2)
    with torch.no_grad():
        return float((model(triggered).argmax(1) == TARGET).float().mean())


@pytest.fixture(scope="module")
def backdoored(digits):
    """A SwiGLU MLP trained with 3% of the training set carrying the trigger, and that set."""
    poisoned = backdoor(digits.x_train, digits.y_train, TARGET, 0.03, size=2, seed=0)
    return _train(poisoned.x, poisoned.y), poisoned


def test_backdoor_poisons_the_requested_share_of_other_classes():
    x, y = torch.zeros(200, 1, 8, 8), torch.arange(200) % 10
    p = backdoor(x, y, target=3, rate=0.1, size=2, seed=0)
    assert int(p.mask.sum()) == 20
    assert bool((y[p.mask] != 3).all()) and bool((p.y[p.mask] == 3).all())
    assert bool((p.x[p.mask][..., -2:, -2:] == 1).all()) and float(p.x[~p.mask].abs().sum()) == 0
    assert torch.equal(p.y[~p.mask], y[~p.mask])
    clean_label = backdoor(x, y, target=3, rate=0.05, size=2, seed=0, clean_label=True)
    assert torch.equal(clean_label.y, y) and bool((y[clean_label.mask] == 3).all())
    assert int(clean_label.mask.sum()) == 10


def test_targeted_flip_relabels_a_share_of_the_source_class_only():
    y = torch.arange(300) % 3
    poisoned, mask = targeted_flip(y, source=1, target=2, rate=0.5, seed=0)
    assert int(mask.sum()) == 50 and bool((y[mask] == 1).all()) and bool((poisoned[mask] == 2).all())
    assert torch.equal(poisoned[~mask], y[~mask])
    with pytest.raises(ValueError):
        targeted_flip(y, 1, 1, 0.5, 0)


def test_every_registered_poisoning_attack_touches_its_share_and_marks_it():
    from swiglu_audit.methods.poisoning import POISONING_ATTACKS, PoisonParams

    x, y = torch.rand(300, 1, 8, 8), torch.arange(300) % 3
    params = PoisonParams(n_classes=3, targeted_pair=(1, 2), backdoor_target=0, trigger_size=2, seed=0)
    for name, attack in POISONING_ATTACKS.items():
        poisoned = attack(x, y, 0.1, params)
        touched = int(poisoned.mask.sum())
        assert touched > 0 and poisoned.x.shape == x.shape and poisoned.y.shape == y.shape, name
        untouched = ~poisoned.mask
        assert torch.equal(poisoned.y[untouched], y[untouched]), name  # only marked samples change
        assert torch.equal(poisoned.x[untouched], x[untouched]), name
    # the registry builds what the functions build
    flip = POISONING_ATTACKS["targeted"](x, y, 0.5, params)
    assert torch.equal(flip.y, targeted_flip(y, 1, 2, 0.5, 0)[0])
    planted = POISONING_ATTACKS["backdoor"](x, y, 0.1, params)
    assert torch.equal(planted.mask, backdoor(x, y, 0, 0.1, 2, 0).mask)


def test_every_registered_poison_detector_scores_and_flags_each_sample():
    from swiglu_audit.methods.poison_detectors import POISON_DETECTORS

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(120, 6)), np.arange(120) % 3
    for name, detect in POISON_DETECTORS.items():
        out = detect(features, labels, 0)
        assert out.scores.shape == (120,) and out.flags.shape == (120,) and out.flags.dtype == bool, name
        assert np.isfinite(out.scores).all(), name


def test_add_trigger_rejects_a_patch_larger_than_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        add_trigger(torch.zeros(1, 1, 4, 4), 5)


def test_backdoor_succeeds_on_the_builtin_data_at_a_high_rate(digits):
    poisoned = backdoor(digits.x_train, digits.y_train, TARGET, 0.1, size=2, seed=0)
    model = _train(poisoned.x, poisoned.y)
    assert _attack_success(model, digits) > 0.9
    with torch.no_grad():
        clean_acc = float((model(digits.x_test).argmax(1) == digits.y_test).float().mean())
    assert clean_acc > 0.9  # the backdoor hides behind normal behaviour on clean inputs


def test_without_poison_the_attack_success_is_near_the_base_rate(digits):
    model = _train(digits.x_train, digits.y_train)
    # the trigger alone does not send inputs to the target: at most a few percent
    assert _attack_success(model, digits) < 0.05


def test_detectors_beat_chance_on_a_planted_backdoor(backdoored):
    model, poisoned = backdoored
    feats = penultimate_features(model, poisoned.x, CPU).numpy()
    outputs = run_detectors(feats, poisoned.y.numpy())
    metrics = {d: detection_metrics(o, poisoned.mask.numpy()) for d, o in outputs.items()}
    assert max(m["auroc"] for m in metrics.values()) > 0.75
    assert max(m["recall"] for m in metrics.values()) > 0.5


def test_detectors_find_a_planted_cluster_in_synthetic_features():
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 1, size=(190, 8))
    poison = rng.normal(0, 1, size=(10, 8)) + np.r_[6.0, np.zeros(7)]  # offset along one direction
    feats, labels = np.vstack([clean, poison]), np.zeros(200, int)
    truth = np.r_[np.zeros(190, bool), np.ones(10, bool)]
    spectral = detection_metrics(spectral_signatures(feats, labels), truth)
    clustering = detection_metrics(activation_clustering(feats, labels), truth)
    assert spectral["auroc"] > 0.95 and spectral["recall"] >= 0.9
    assert clustering["auroc"] > 0.95 and clustering["precision"] >= 0.9 and clustering["recall"] >= 0.9


def test_detection_metrics_by_hand():
    out = DetectorOutput(scores=np.array([0.9, 0.8, 0.1, 0.8]), flags=np.array([True, True, False, False]))
    m = detection_metrics(out, np.array([True, False, False, True]))
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["n_flagged"] == 2
    # positives {0.9, 0.8} vs negatives {0.8, 0.1}: pairs won 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    assert m["auroc"] == pytest.approx(3.5 / 4)


def test_a_planted_duplicate_is_found_across_and_within_splits(digits):
    train = digits.x_train.clone()
    test = digits.x_test[:50].clone()
    assert exact_duplicates(train, test) == [] and near_duplicates(train, test, 0.03) == []
    train[7] = test[11]  # exact leak
    test[20] = (train[3] + 0.01).clamp(0, 1)  # near leak: a faint uniform shift
    assert exact_duplicates(train, test) == [(7, 11)]
    assert {(i, j) for i, j, _ in near_duplicates(train, test, 0.03)} == {(7, 11), (3, 20)}
    train[100] = train[5]
    assert exact_duplicates(train) == [(5, 100)]
    assert (5, 100) in {(i, j) for i, j, _ in near_duplicates(train, None, 0.03)}


def test_copies_that_went_through_a_pipeline_are_near_duplicates_and_clean_digits_are_not(digits):
    from swiglu_audit.methods.integrity import invariant_near_duplicates

    train, test = digits.x_train, digits.x_test[:120].clone()
    assert invariant_near_duplicates(train, test) == []  # no clean test digit is paired
    assert invariant_near_duplicates(train, None) == []  # nor any two clean training digits
    gen = torch.Generator().manual_seed(0)
    planted = {10: 3, 20: 4, 30: 5, 40: 6}  # test row -> its training source
    test[10] = (train[3] * 0.9 + 0.08).clamp(0, 1)  # brighter, less contrast
    test[20] = (train[4] * 0.9 + 0.08 + 0.02 * torch.randn(train[4].shape, generator=gen)).clamp(0, 1)  # and noise
    test[30] = torch.cat([train[5][..., :1], train[5][..., :-1]], dim=-1)  # shifted one pixel
    test[40] = (torch.round(train[6] * 31) / 31).clamp(0, 1)  # re-encoded at 5 bits
    found = {j: i for i, j, _ in invariant_near_duplicates(train, test)}
    assert found == planted
    assert {j for _, j, _ in near_duplicates(train, test, 0.03)} <= {40}  # the raw rule misses the rest
    within = train.clone()
    within[200] = (within[7] * 0.8 + 0.1).clamp(0, 1)
    assert [(i, j) for i, j, _ in invariant_near_duplicates(within, None)] == [(7, 200)]


def _shapes(n: int, seed: int) -> torch.Tensor:
    """CIFAR-sized images: a colour gradient behind a few rectangles of random colours, faint noise."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, 32)
    x = torch.rand(n, 3, 1, 1, generator=gen) * 0.6 + 0.2 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * ramp[None, None, :, None]
    x = x.expand(n, 3, 32, 32).clone()
    for i in range(n):
        for _ in range(3):
            y0, x0 = torch.randint(0, 24, (2,), generator=gen).tolist()
            h, w = torch.randint(3, 10, (2,), generator=gen).tolist()
            x[i, :, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=gen)
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def test_random_crops_of_training_images_are_found_on_their_central_windows():
    """RandomCrop(32, padding=4) before the split: copies shifted by 2 to 4 pixels, zeros in the
    strips the shift brings in. The 1-pixel rule misses them; the central windows find each with
    its source, and no clean image is paired."""
    from swiglu_audit.methods import shifted_copies
    from swiglu_audit.methods.integrity import NearDuplicateIndex, invariant_near_duplicates

    x = _shapes(420, 0)
    train, test = x[:300], x[300:].clone()
    assert invariant_near_duplicates(train, test) == []
    planted = {}
    for j, (source, dy, dx) in enumerate([(3, 2, -3), (50, -4, 4), (99, 3, 0), (150, -2, -2), (200, 0, 4)]):
        padded = torch.nn.functional.pad(train[source], (4, 4, 4, 4))
        test[10 * j] = padded[:, 4 + dy:36 + dy, 4 + dx:36 + dx]
        planted[10 * j] = source
    index = NearDuplicateIndex(train)
    assert {j: i for i, j, _ in index.pairs(test)} == planted
    search = index.shift_search(len(test))
    assert (search.largest_shift, search.searched, search.why) == (4, True, "") and 0 < search.tflop < 2
    # an eighth of the side, at least 1 from 8 pixels; under 8 pixels the 1-pixel rule alone
    assert [shifted_copies.largest_shift((1, 3, side, side)) for side in (7, 8, 15, 16, 24, 32, 64)] == [0, 1, 1, 2, 3, 4, 4]
    assert NearDuplicateIndex(train[:, :, :7, :7]).shift_search(10) is None


def test_a_digit_shifted_by_one_pixel_with_zeros_is_a_copy(digits):
    """The 1-pixel rule's shifted copies repeat the edge; a digit whose strokes reach the bottom
    row, moved up by one pixel with a zero row brought in (a crop's padding), was missed."""
    from swiglu_audit.methods.integrity import invariant_near_duplicates

    train, test = digits.x_train, digits.x_test[:120].clone()
    reaching = [i for i in range(len(train)) if float(train[i, 0, -1].sum()) > 1.0][:3]
    for j, source in enumerate(reaching):
        test[10 * j] = torch.nn.functional.pad(train[source], (1, 1, 1, 1))[:, 2:10, 1:9]  # up by one
    assert {j: i for i, j, _ in invariant_near_duplicates(train, test)} == {10 * j: s for j, s in enumerate(reaching)}


def test_a_window_search_over_its_budget_is_not_run_and_says_so():
    from swiglu_audit.methods.integrity import NearDuplicateIndex

    x = _shapes(160, 1)
    train, test = x[:120], x[120:].clone()
    test[0] = torch.nn.functional.pad(train[7], (4, 4, 4, 4))[:, 7:39, 1:33]  # shifted 3 and -3 pixels
    index = NearDuplicateIndex(train, shift_budget=1e6)
    search = index.shift_search(len(test))
    assert not search.searched and "over the search's budget" in search.why and "TFLOP" in search.why
    assert search.tflop > 1e6 / 1e12
    assert index.pairs(test) == []  # the copy is missed, and the finding will say why
    assert index._windows is None  # and no window index was built for a search never run


def test_a_leakage_pass_that_left_shifted_copies_unsearched_is_an_inconclusive_warn():
    """No leak found is a PASS only where every lookup ran: a lookup over its budget leaves copies
    shifted with zeros brought in unsearched, so the finding says which and is at best a WARN; a
    FAIL stands, with the same sentence."""
    from swiglu_audit.checks.data_integrity import LEAKAGE
    from swiglu_audit.verdicts.risk import judged_finding

    policy = {"max_leakage_share": 0.01}
    searched = {"largest_shift": 1, "searched": True, "why": "", "tflop": 0.1}
    skipped = {"largest_shift": 4, "searched": False, "why": "over", "tflop": 35.0}

    def judged(share, n_leaked, searches, modality="image"):
        return judged_finding(LEAKAGE, [], share, policy, f"share duplicated in train ({n_leaked})",
                              facts={"n_leaked": n_leaked, "shift_search": searches, "modality": modality})
    passed = judged(0.0, 0, {"test": searched, "val": searched})
    # "nothing found" says what was looked for, and what was not
    assert passed.status == "PASS" and "looked for: exact copies" in passed.reason
    assert "shifted by up to 1 pixel; not for resized crops, copies brightened until they saturate" in passed.reason
    wider = judged(0.0, 0, {"test": {**searched, "largest_shift": 3}, "val": searched})
    assert wider.status == "PASS" and "shifted by up to 3 pixels;" in wider.reason
    rows = judged(0.0, 0, {}, modality="tabular")
    assert rows.status == "PASS" and "rows near one on robust z-scores" in rows.reason and "pixel" not in rows.reason
    capped = judged(0.0, 0, {"test": skipped, "val": searched, "test_in_val": skipped})
    assert capped.status == "WARN" and "inconclusive" in capped.reason
    assert "test against train, test against validation" in capped.reason
    assert "shifted by up to 4 pixel(s) with zeros brought in" in capped.reason
    assert "poisoning.shift_search_tflop = 35 or more" in capped.reason
    assert capped.details["judged"]["modified_by"] == ["shifted copies not looked for"]
    assert "looked for: exact copies" not in capped.reason  # only a PASS states its scope
    failed = judged(0.05, 5, {"test": skipped, "val": searched})
    assert failed.status == "FAIL" and "not looked for (test against train" in failed.reason


def test_tabular_copies_rounded_or_faintly_noised_are_near_duplicates():
    from sklearn.datasets import load_breast_cancer

    from swiglu_audit.methods.integrity import invariant_near_duplicates

    x = torch.from_numpy(load_breast_cancer().data.astype("float32"))
    train, test = x[:400], x[400:].clone()
    assert invariant_near_duplicates(train, test) == []
    magnitude = 10 ** (torch.floor(torch.log10(train[17].abs() + 1e-12)) - 2)
    test[5] = torch.round(train[17] / magnitude) * magnitude  # 3 significant digits
    test[9] = train[30] * 1.001
    assert {(i, j) for i, j, _ in invariant_near_duplicates(train, test)} == {(17, 5), (30, 9)}


def test_a_planted_mislabel_is_found(digits):
    y = digits.y_train.clone()
    clean_flags = set(label_issues(digits.x_train, y, 10)["indices"])
    planted = [i for i in range(len(y)) if i not in clean_flags][:3]
    for i in planted:
        y[i] = (y[i] + 5) % 10
    result = label_issues(digits.x_train, y, 10)
    assert set(planted) <= set(result["indices"])
    assert len(result["indices"]) <= len(clean_flags) + 3 + 5  # a handful, not a flood
    suggested = dict(zip(result["indices"], result["suggested"]))
    assert all(suggested[i] == int(digits.y_train[i]) for i in planted)


def test_poisoning_config_is_validated():
    with pytest.raises(ConfigError, match="detection_rate"):
        build_config({"poisoning": {"backdoor_rates": [0.01], "detection_rate": 0.05}})
    with pytest.raises(ConfigError, match="families"):
        build_config({"poisoning": {"families": ["cnn"]}})
    with pytest.raises(ConfigError, match=r"flip_rates must lie in \(0, 1\)"):
        build_config({"poisoning": {"flip_rates": [0.0, 0.1]}})
    with pytest.raises(ConfigError, match="targeted_pair"):
        build_config({"poisoning": {"targeted_pair": [2, 2]}})
    cfg = build_config({"poisoning": {"flip_rates": [0.2, 0.05, 0.2]}})
    assert cfg.poisoning.flip_rates == (0.05, 0.2)
    # the threat the scan's "nothing found" covers: named kinds, a rate that is a share
    with pytest.raises(ConfigError, match="threat_triggers: unknown trigger kind 'moon'; choose one of corner_patch"):
        build_config({"poisoning": {"threat_triggers": ["corner_patch", "moon"]}})
    with pytest.raises(ConfigError, match="threat_triggers must be a non-empty list"):
        build_config({"poisoning": {"threat_triggers": []}})
    with pytest.raises(ConfigError, match=r"threat_rate = 0.7 must lie in \(0, 0.5\)"):
        build_config({"poisoning": {"threat_rate": 0.7}})
    kept = build_config({"poisoning": {"threat_triggers": ["blend", "sparse", "blend"]}}).poisoning.threat_triggers
    assert kept == ("blend", "sparse")  # the user's order, once each


def test_models_poisoned_the_cheaper_way_get_the_cheaper_scan_and_the_plan_counts_it(tmp_path):
    from swiglu_audit.measure.poisoning import (
        CHEAPER_SCAN_PER_CLASS,
        CHEAPER_SCAN_STEPS,
        SCAN_INPUTS,
        planned_work,
        scan_inputs,
        scan_settings,
    )
    from swiglu_audit.session import AuditSession

    def session(mode):
        return AuditSession(build_config({"poisoning": {"mode": mode}, "device": "cpu", "cache_dir": str(tmp_path)},
                                         profile="quick"))

    full, cheap = session("retrain"), session("cheaper")  # cheaper: the zoo too is poisoned the cheaper way
    assert scan_settings(full, "swiglu-mlp") == {"steps": 200}  # the scan's own inputs: the zoo's cache keys as before
    assert scan_settings(cheap, "swiglu-mlp") == {"steps": CHEAPER_SCAN_STEPS, "per_class": CHEAPER_SCAN_PER_CLASS}
    assert scan_inputs(scan_settings(full, "swiglu-mlp")) == SCAN_INPUTS
    # the plan counts scan steps over SCAN_INPUTS inputs: the cheaper scan is a quarter of the full one
    full_steps = planned_work(full, "swiglu-mlp").units["trigger scan"]
    cheap_steps = planned_work(cheap, "swiglu-mlp").units["trigger scan"]
    # the audited set and each kind of the power panel (6 by default): ten classes, 200 steps each
    kinds = len(full.config.poisoning.threat_triggers)
    assert kinds == 6 and full_steps == (1 + kinds) * 10 * 200 and cheap_steps * 4 == full_steps


def test_penultimate_features_of_a_users_model_and_a_clear_error_without_a_head():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
    model = torch.nn.Sequential(body, torch.nn.Linear(16, 10))
    x = torch.rand(5, 1, 8, 8)
    # no forward_features: the input of the last nn.Linear, read through a hook that is removed after
    assert torch.allclose(penultimate_features(model, x, CPU), body(x))
    assert not model[1]._forward_hooks
    with pytest.raises(ModelContractError, match="forward_features"):
        penultimate_features(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity()), x, CPU)


BACKDOORED_DATA = '''
import json

import numpy as np
from sklearn.datasets import load_digits

TARGET = 3


def _load(trigger, n_poisoned=70):  # 70: 5% of the training set
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    x_train, y_train, x_test, y_test = x[:1400].copy(), y[:1400].copy(), x[1400:].copy(), y[1400:].copy()
    rng = np.random.default_rng(5)
    poisoned = rng.choice(np.flatnonzero(y_train != TARGET), n_poisoned, replace=False)
    trigger(x_train, poisoned)
    y_train[poisoned] = TARGET
    np.save("poisoned_indices.npy", poisoned)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "backdoored"}


def checkerboard_top_left():  # the attacker's own trigger, place and shape
    def stamp(x, idx):
        x[idx, 0, 0:3, 0:3] = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype="float32")
    return _load(stamp)


def small_diagonal_3_percent():  # a small trigger of the attacker's own, at 3%: a 2x2 diagonal low on the left
    def stamp(x, idx):
        x[idx, 0, 5:7, 1:3] = np.array([[1, 0], [0, 1]], dtype="float32")
    return _load(stamp, n_poisoned=42)


def clean():  # the same split, no poison
    return _load(lambda x, idx: None, n_poisoned=0)


def harness_trigger():  # the same trigger the harness plants: bottom-right 2x2, full intensity
    def stamp(x, idx):
        x[idx, :, -2:, -2:] = 1.0
    return _load(stamp)
'''


def _backdoored_audit(pytester, factory, select, panel=None, seeds=(0, 1)):
    return audit_users_data(pytester, "backdoored", BACKDOORED_DATA, factory, select, panel=panel, seeds=seeds,
                            backdoor_target=3 if factory == "harness_trigger" else 0)


def test_a_users_backdoored_training_set_is_found_by_the_scan(pytester, tmp_path, monkeypatch):
    """Through the user contract: 5% of the user's own training set carries a checkerboard in the
    top-left corner (not the harness's trigger) and is relabelled 3."""
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    result, doc = _backdoored_audit(pytester, "checkerboard_top_left", "training_set_scan", panel=("corner_patch",))
    assert result.ret == 1
    planted = set(np.load(pytester.path / "poisoned_indices.npy").tolist())
    scans = [f for f in doc["findings"] if f["check"] == "training_set_scan"]
    assert len(scans) == 2
    for f in scans:
        assert f["status"] == "FAIL" and f["details"]["suspected_target"] == 3, f["reason"]
        assert "may already carry a backdoor" in f["reason"]
        flagged = set(f["details"]["indices"])  # positions in the user's own x_train
        precision = len(flagged & planted) / len(flagged)
        recall = len(flagged & planted) / len(planted)
        assert precision >= 0.8 and recall >= 0.7, (f["id"], precision, recall)
        samples = f["details"]["samples"]  # the evidence for each listed sample
        assert [s["index"] for s in samples] == f["details"]["indices"]
        reasons = {"rests on the trigger", "carries the trigger", "is in the relabel census's group"}
        assert all(s["why"] and set(s["why"].split(" and ")) <= reasons and 0.0 <= s["pattern_match_share"] <= 1.0
                   for s in samples), [s["why"] for s in samples]
        assert f["details"]["trigger_image"]  # the recovered trigger, drawn in the report
    html = (pytester.path / "reports" / "report.html").read_text()
    assert "Recovered trigger" in html


def test_a_small_trigger_at_3_percent_is_never_passed_and_a_clean_set_is_never_failed(pytester, tmp_path, monkeypatch):
    """Through the user contract: the attacker's own small trigger (not one of the panel's kinds,
    not in a place the panel plants) on 3% of the training set gets a FAIL, or an inconclusive
    WARN where the scan's power is too low, from every model's scan and from the training set's
    verdict; the same split without poison gets no FAIL from any of them."""
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    select = "training_set_scan or training_set_verdict"
    # a one-kind panel: fewer kinds only make "nothing found" easier to pass, so the test is no weaker;
    # one seed: the scan reads each model's first seed only
    _, doc = _backdoored_audit(pytester, "small_diagonal_3_percent", select, panel=("corner_patch",), seeds=(0,))
    verdicts = [f for f in doc["findings"] if f["check"] in ("training_set_scan", "training_set_verdict")]
    assert len(verdicts) == 3
    for f in verdicts:
        assert f["status"] in ("FAIL", "WARN"), (f["id"], f["reason"])
    for f in (f for f in verdicts if f["check"] == "training_set_scan"):  # each model's panel, kind by kind
        assert set(f["details"]["power_on_planted_backdoors"]["kinds"]) == {"corner_patch"}
    _, doc = _backdoored_audit(pytester, "clean", select, panel=("corner_patch",), seeds=(0,))
    verdicts = [f for f in doc["findings"] if f["check"] in ("training_set_scan", "training_set_verdict")]
    assert len(verdicts) == 3 and all(f["status"] != "FAIL" for f in verdicts), [f["reason"] for f in verdicts]


def test_a_model_that_already_obeys_the_harness_trigger_is_a_fail_not_a_low_excess(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    result, doc = _backdoored_audit(pytester, "harness_trigger", "backdoor_attack_success and not vs_baseline")
    findings = [f for f in doc["findings"] if f["check"] == "backdoor_attack_success"]
    assert result.ret == 1 and findings
    for f in findings:
        assert f["details"]["base_rate"]["value"] > 0.9
        assert f["status"] == "FAIL" and "may already carry a backdoor" in f["reason"]


CORNER_BLIND_MODELS = '''
import torch
from torch import nn
import torch.nn.functional as F


class CornerBlind(nn.Module):
    """Reads only the top-left 6x6 of an 8x8 digit: the harness's bottom-right trigger never reaches it."""

    def __init__(self, gated):
        super().__init__()
        self.gated = gated
        self.inp = nn.Linear(36, 48)
        self.up, self.gate = nn.Linear(48, 64), nn.Linear(48, 64)
        self.down = nn.Linear(64, 48)
        self.head = nn.Linear(48, 10)

    def forward_features(self, x):
        h = F.relu(self.inp(x[..., :6, :6].flatten(1)))
        inner = F.silu(self.gate(h)) * self.up(h) if self.gated else F.relu(self.up(h))
        return h + self.down(inner)

    def forward(self, x):
        return self.head(self.forward_features(x))


def swiglu(n_classes=10):
    return CornerBlind(gated=True)


def relu(n_classes=10):
    return CornerBlind(gated=False)
'''


def test_a_model_that_cannot_learn_a_planted_backdoor_gets_an_inconclusive_scan_without_that_power_scan(
        pytester, tmp_path, monkeypatch):
    """A user's model that never sees the corner where the harness plants its trigger cannot
    learn that backdoor, so no scan can show its power on it: the training-set scan says so
    (inconclusive WARN, never PASS, naming the kind), and the costly scan of that planted set is
    not run; the panel's other kinds, which the model can see, are scanned."""
    from swiglu_audit.config import OPT_ENABLE

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(cornerblind=CORNER_BLIND_MODELS)
    pytester.makefile(".toml", pyproject="""
[tool.swiglu_audit]
profile = "quick"
[[tool.swiglu_audit.models]]
name = "blind-swiglu"
factory = "cornerblind:swiglu"
role = "candidate"
[[tool.swiglu_audit.models]]
name = "blind-relu"
factory = "cornerblind:relu"
[tool.swiglu_audit.poisoning]
threat_triggers = ["corner_patch", "edge_patch"]
""")
    pytester.syspathinsert()
    pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "training_set_scan")
    doc = json.loads((pytester.path / "reports" / "report.json").read_text())
    scans = [f for f in doc["findings"] if f["check"] == "training_set_scan"]
    assert len(scans) == 2
    scanned_panels = 0
    for f in scans:
        panel = f["details"]["power_on_planted_backdoors"]
        corner = panel["kinds"]["corner_patch"]
        assert f["status"] == "WARN" and corner["not_learned"] < 0.1, (f["reason"], panel)
        assert "corner_patch: not learned by this model" in f["reason"] and "under 0.1" in f["reason"]
        assert corner["recall"] == 0.0 and not corner["target_found"]
        scanned_panels += sum("not_learned" not in p for p in panel["kinds"].values())
    from safetensors import safe_open

    records = []
    for path in (tmp_path / "cache").rglob("*.safetensors"):
        with safe_open(str(path), "pt") as fh:
            records.append(json.loads((fh.metadata() or {}).get("record", "{}")))
    trigger_scans = [r for r in records if "anomaly_index" in r]
    # each model's audited training set, and the planted sets it learned; never the corner patch's
    assert len(trigger_scans) == 2 + scanned_panels


# --- integrity on small and duplicated sets; the targeted flip without its source class; the
# poisoning comparisons' 0/1 floors --------------------------------------------------------------

def _fake_audit(data, **poisoning):
    """What the integrity and targeted measurements read of a session: its data, its poisoning
    settings, its per-process memo and its cache (here one that holds nothing)."""
    from types import SimpleNamespace

    memo: dict = {}

    def remember(key, compute):
        if key not in memo:
            memo[key] = compute()
        return memo[key]
    settings = {"targeted_pair": (0, 1), "targeted_rates": (0.2,), "mode": "retrain", "near_duplicate_rms": 0.03,
                "near_duplicate_ratio": 0.35, "shift_search_tflop": 2.0, **poisoning}
    return SimpleNamespace(data=data, config=SimpleNamespace(poisoning=SimpleNamespace(**settings)), memo=remember,
                           cached_record=lambda kind, models, settings, code, compute: compute())


def _split(digits, n_train: int, test_classes=None):
    from types import SimpleNamespace

    keep = torch.ones(len(digits.y_test), dtype=torch.bool) if test_classes is None else \
        torch.isin(digits.y_test, torch.tensor(test_classes))
    return SimpleNamespace(x_train=digits.x_train[:n_train], y_train=digits.y_train[:n_train],
                           x_val=digits.x_val[:40], y_val=digits.y_val[:40],
                           x_test=digits.x_test[keep][:60], y_test=digits.y_test[keep][:60], n_classes=10)


@pytest.mark.parametrize("n_train", [75, 79])
def test_label_issues_fit_the_pca_to_each_folds_rows_and_cannot_sink_leakage_and_duplicates(digits, n_train,
                                                                                         monkeypatch):
    """8x8 images with 75-79 training rows: each fold trains on 56-63 rows, fewer than the 64 pixels
    the PCA asked for. The label issues are computed; and were they to fail, leakage and
    duplicates are measured apart and still are."""
    from swiglu_audit.measure import poisoning as measure

    issues = label_issues(digits.x_train[:n_train], digits.y_train[:n_train], 10)
    assert issues["n_folds"] >= 2 and all(0 <= i < n_train for i in issues["indices"])
    audit = _fake_audit(_split(digits, n_train))
    labels = measure.label_errors(audit)
    assert labels["n_train"] == n_train and labels["indices"] == issues["indices"]

    def broken(*args, **kwargs):
        raise ValueError("the label model failed")
    monkeypatch.setattr(measure, "label_issues", broken)
    audit = _fake_audit(_split(digits, n_train))
    result = measure.integrity(audit)
    assert result["n_train"] == n_train and result["leaks"]["test"]["exact"] == [] and "labels" not in result
    with pytest.raises(ValueError, match="label model failed"):
        measure.label_errors(audit)


def test_a_set_stored_twice_still_finds_faintly_noised_leaked_copies(digits):
    """300 rows each stored twice: every row's nearest neighbour is its own copy (distance 0), so the
    unit is each row's nearest *distinct* row, as on the deduplicated set; 20 test rows that copy
    training rows with noise of sd 0.04 are found as they are against the deduplicated set."""
    from swiglu_audit.methods.integrity import NearDuplicateIndex

    rows = digits.x_train[:300]
    leaked = (rows[:20] + 0.04 * torch.randn(rows[:20].shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    doubled, deduplicated = NearDuplicateIndex(torch.cat([rows, rows])), NearDuplicateIndex(rows)
    assert doubled.unit == pytest.approx(deduplicated.unit) and doubled.unit > 0.05
    found = {j for _, j, _ in doubled.pairs(leaked)}
    assert len(found) >= 15 and found == {j for _, j, _ in deduplicated.pairs(leaked)}
    # every row stored twice and nothing else: no distinct neighbour anywhere, the unit falls back to 1
    assert NearDuplicateIndex(torch.cat([rows[:1], rows[:1]])).unit == 1.0


def test_a_targeted_flip_whose_source_class_is_not_in_the_test_split_is_skipped_with_the_setting_named(digits):
    from swiglu_audit.measure import poisoning as measure

    without_source = _fake_audit(_split(digits, 200, test_classes=[1, 2, 3]))
    reason = measure.targeted_unmeasurable(without_source)
    assert reason is not None and "targeted_pair = [0, 1]" in reason and "no input of the source class 0" in reason
    assert "classes [1, 2, 3]" in reason
    with pytest.raises(ValueError, match="targeted_pair"):
        measure.targeted(without_source, "m")
    assert measure.targeted_unmeasurable(_fake_audit(_split(digits, 200))) is None


def test_the_poisoning_comparisons_keep_the_floor_of_0_1_outcomes():
    """No changed prediction in either arm (label flips), no triggered input sent to the target by
    either (backdoors): not an exact 0 difference. The float matrices the comparisons once passed
    gave [0, 0]."""
    from swiglu_audit.suites.suite_poisoning import backdoor_comparison, flip_change_comparison

    from swiglu_audit.verdicts.stats import Statistics

    stats = Statistics(level=0.95, alpha=0.05)
    correct = np.ones((3, 50), dtype=bool)
    arm = {"clean": correct, "poisoned": {0.2: correct.copy()}}
    old = stats.compare(*(a["poisoned"][0.2].astype(float) - a["clean"] for a in (arm, arm)))
    assert (old.ci_low, old.ci_high) == (0.0, 0.0)
    flips = flip_change_comparison(stats, arm, arm, 0.2)
    assert flips.difference == 0.0 and flips.ci_low < -0.01 and flips.ci_high > 0.01
    never = np.mean([np.zeros((3, 50), dtype=bool)] * 3, axis=0)  # success averaged over three rates: floats
    assert stats.compare(never, never).ci_high == 0.0
    backdoors = backdoor_comparison(never, never, stats.level, stats.alpha)
    assert backdoors.difference == 0.0 and backdoors.ci_low < -0.01 and backdoors.ci_high > 0.01
