"""The drift suite: its tests on data where the truth is known, the live split's contract, and
the suite through the user contract (a tiny audit with live data)."""

import json

import numpy as np
import pytest
from conftest import TINY_AUDIT_TOML

from swiglu_audit.config import OPT_ENABLE, OPT_LIVE
from swiglu_audit.errors import DataContractError
from swiglu_audit.methods.drift import atc_estimate, atc_replicates, feature_drift, mmd_permutation_test, prediction_drift
from swiglu_audit.training.data import attach_live, load_digits_data


def test_mmd_holds_its_level_on_one_distribution_and_finds_a_shift():
    rng = np.random.default_rng(0)
    null = [mmd_permutation_test(rng.normal(0, 1, (300, 16)), rng.normal(0, 1, (150, 16)), 99, seed=s)["p_value"]
            for s in range(40)]
    assert np.mean(np.array(null) < 0.05) <= 0.15  # 5% nominal; 40 draws
    shifted = mmd_permutation_test(rng.normal(0, 1, (300, 16)), rng.normal(0.4, 1, (150, 16)), 99)
    assert shifted["p_value"] < 0.02 and shifted["mmd2"] > 0


def test_feature_tests_name_the_drifted_feature_after_the_fdr_correction():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (400, 6))
    live = np.c_[rng.normal(0, 1, (400, 5)), rng.normal(0.8, 1, (400, 1))]
    result = feature_drift(ref, live, 0.05)
    assert result["drifted_features"] == [5]
    assert all(a >= p for a, p in zip(result["adjusted"], result["p_values"]))


def test_prediction_drift_sees_a_label_shift():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 4, 400)
    assert prediction_drift(ref, rng.integers(0, 4, 400), 4)["p_value"] > 0.01
    assert prediction_drift(ref, np.r_[np.zeros(300, int), rng.integers(0, 4, 100)], 4)["p_value"] < 1e-6


def test_atc_recovers_the_accuracy_where_confidence_separates_right_from_wrong():
    """A model that is right exactly when its confidence exceeds 0.3: ATC's threshold lands there
    on validation data, and on shifted live inputs its estimate is their true accuracy."""
    rng = np.random.default_rng(3)
    conf_val = rng.uniform(0, 1, 4000)
    correct_val = conf_val > 0.3
    conf_live = rng.beta(2, 3, 4000)  # harder inputs: lower confidence
    true_live_accuracy = float(np.mean(conf_live > 0.3))
    assert abs(atc_estimate(conf_val, correct_val, conf_live) - true_live_accuracy) < 0.01
    (point, reps), = atc_replicates(conf_val[None, :500], correct_val[None, :500], [conf_live[None, :500]], 100)
    assert reps.shape == (1, 100) and 0 < reps.std() < 0.05 and abs(point[0] - reps.mean()) < 0.02


def test_live_data_must_match_the_training_inputs():
    data = load_digits_data()
    with pytest.raises(DataContractError, match="no such file"):
        attach_live(data, "no-such-live.npz")
    from swiglu_audit.training.data import _with_live

    with pytest.raises(DataContractError) as info:
        _with_live(data, {"x_live": np.ones((30, 1, 4, 4)) * 2, "y_live": np.zeros(29)}, "live")
    text = str(info.value)
    assert "shape (1, 4, 4)" in text and "[0, 1]" in text and "30 inputs but y_live 29" in text
    live = _with_live(data, {"x_live": data.x_test[:50].numpy()}, "live")
    assert live.x_live.shape == (50, 1, 8, 8) and live.y_live is None
    assert live.fingerprint == data.fingerprint  # new live data never retrains a cached model


def _live_project(pytester, noise: float, labelled: bool, name: str = "live.npz"):
    data = load_digits_data()
    rng = np.random.default_rng(0)
    x = np.clip(data.x_test.numpy() + rng.normal(0, noise, data.x_test.shape), 0, 1).astype(np.float32)
    arrays = {"x_live": x, **({"y_live": data.y_test.numpy()} if labelled else {})}
    np.savez(pytester.path / name, **arrays)
    pytester.makefile(".toml", pyproject=TINY_AUDIT_TOML)


def test_the_drift_suite_through_the_contract(tiny_project):
    """Noisy production inputs without labels: input drift is flagged, the live accuracy is
    estimated without labels, and the candidate is compared with the baseline; with no live data
    the suite is skipped and the coverage matrix says what it needs."""
    _live_project(tiny_project, noise=0.3, labelled=False)
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "drift", f"{OPT_LIVE}=live.npz")
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    by_check = {f["check"]: f for f in doc["findings"]}
    assert by_check["input_drift"]["status"] == "WARN" and by_check["input_drift"]["value"] < 0.05
    live = by_check["live_accuracy"]
    assert live["details"]["measured"] is False and "ATC" in live["reason"] and live["ci_low"] is not None
    assert "drift_degradation_vs_baseline" in by_check and doc["environment"]["data"]["live"]["labelled"] is False
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "drift")
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    assert not [f for f in doc["findings"] if f["suite"] == "drift"]
    notes = {c["note"] for c in doc["coverage"] if c["suite"] == "drift"}
    assert notes == {"needs user input: live data (x_live, or `live = ...`)"}


def test_a_live_dataset_of_pairs_is_read_and_minus_one_means_unlabelled(tmp_path):
    import torch

    from swiglu_audit.training.data import _with_live

    data = load_digits_data()

    class Live(torch.utils.data.Dataset):
        def __init__(self, label):
            self.label = label

        def __len__(self):
            return 40

        def __getitem__(self, i):
            return data.x_test[i], (int(data.y_test[i]) if self.label is None else self.label)

    labelled = _with_live(data, {"live": Live(None)}, "live", tmp_path)
    assert labelled.x_live.shape == (40, 1, 8, 8) and torch.equal(labelled.y_live, data.y_test[:40])
    assert _with_live(data, {"live": Live(-1)}, "live", tmp_path).y_live is None


def test_confidence_scores_keep_their_order_where_the_softmax_saturates():
    from swiglu_audit.methods.drift import confidence_scores

    logits = np.array([[30.0, 0.0, 0.0], [40.0, 0.0, 0.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    import torch
    assert float(torch.softmax(torch.from_numpy(logits[:2]), 1)[:, 0].min()) == 1.0  # float32 saturates
    scores = confidence_scores(logits)
    assert scores[1] > scores[0] > scores[2] and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="NaN"):
        confidence_scores(np.array([[np.nan, 0.0]]))


def _damaged_live_files(folder):
    """name -> a live file damaged as a pipeline's drop can be: a lying header claims 10**13 rows."""
    import io
    import zipfile

    x = load_digits_data().x_test[:40].numpy()
    np.savez(folder / "good.npz", x_live=x)
    good = (folder / "good.npz").read_bytes()
    rotten = bytearray(good)
    rotten[len(good) // 2] ^= 0xFF  # in the middle of the array's bytes
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**13, 1, 8, 8)})
    lying = header.getvalue() + x.tobytes()
    files = {"truncated.npz": good[:len(good) // 2], "rotten.npz": bytes(rotten), "empty.npz": b"", "empty.npy": b"",
             "lying.npy": lying}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    with zipfile.ZipFile(folder / "lying.npz", "w") as archive:
        archive.writestr("x_live.npy", lying)
    return [*files, "lying.npz"]


def test_a_damaged_live_file_is_a_contract_error_that_says_so(tmp_path):
    data = load_digits_data()
    for name in _damaged_live_files(tmp_path):
        with pytest.raises(DataContractError) as info:
            attach_live(data, str(tmp_path / name))
        for words in (f"'{tmp_path / name}' cannot be read", "damaged", "write it again with numpy.savez"):
            assert words in str(info.value), (name, str(info.value))
        if name.startswith("lying"):  # refused before numpy allocates what the header claims
            assert "header declares shape (10000000000000, 1, 8, 8)" in str(info.value)
    assert attach_live(data, str(tmp_path / "good.npz")).x_live.shape == (40, 1, 8, 8)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA device"))])
def test_live_tensors_that_require_grad_or_sit_on_a_gpu_are_taken_as_plain_cpu_tensors(device):
    """The drift suite calls .numpy() on the live split: a tensor that requires grad, or lives on a
    GPU, must be detached and moved when it is read, not fail in the middle of the suite."""
    from swiglu_audit.training.data import _with_live

    data = load_digits_data()
    x = data.x_test[:40].clone().to(device).requires_grad_()
    y = data.y_test[:40].float().to(device).requires_grad_()
    live = _with_live(data, {"x_live": x, "y_live": y}, "live")
    assert not live.x_live.requires_grad and live.x_live.device.type == "cpu"
    assert live.y_live.device.type == "cpu" and np.array_equal(live.y_live.numpy(), data.y_test[:40].numpy())
    assert np.array_equal(live.x_live.numpy(), data.x_test[:40].numpy())


def test_a_live_dataset_whose_inputs_hold_no_values_is_named():
    import torch

    from swiglu_audit.training.data import _with_live

    class Empty(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return torch.zeros(1, 1, 0), 0

    with pytest.raises(DataContractError) as info:
        _with_live(load_digits_data(), {"live": Empty()}, "live")
    assert info.value.problems == ["live: x_live inputs of shape (1, 1, 0) hold no values; give at least one feature per input"]


def test_live_accuracy_with_every_input_right_is_not_an_exact_zero_drop():
    """All 30 live and 200 test inputs right: every resample reads a drop of 0, which was the
    interval [0, 0] and a PASS. With the Agresti-Coull floor on each side the interval reaches
    past max_live_accuracy_drop = 0.05 at 30 live inputs: inconclusive."""
    from swiglu_audit.checks.drift import LIVE_ACCURACY
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.measure.drift import change_floor, comparison_floor
    from swiglu_audit.verdicts.risk import judged_finding
    from swiglu_audit.verdicts.stats import replicate_comparison, replicate_estimate, share_floor

    parts = {"measured": True, "live_accuracy": [1.0, 1.0], "test_accuracy": [1.0, 1.0],
             "live_estimate": [0.9, 0.9], "test_estimate": [0.9, 0.9]}
    floor = change_floor(parts, 30, 200)
    assert floor == pytest.approx(share_floor(30, 30) + share_floor(200, 200))
    change, reps = np.zeros(2), np.zeros((2, 100))
    drop = replicate_estimate(-change, -reps, 30, 0.95, bounds=(-1.0, 1.0), floor=floor)
    assert drop.value == 0.0 and drop.ci_high > 0.05
    finding = judged_finding(LIVE_ACCURACY, ["m"], drop.value, DEFAULT_POLICY, "drop",
                             ci=(drop.ci_low, drop.ci_high), ci_level=drop.level)
    assert finding.status == "WARN"
    # the label-free estimates take the same floor on their own shares
    assert change_floor({**parts, "measured": False}, 30, 200) == pytest.approx(
        share_floor(27, 30) + share_floor(180, 200))
    # candidate vs baseline, both right everywhere: one discordant pseudo-input a split, not exact equality
    cmp = replicate_comparison(change, reps, change, reps, 30, 0.95, 0.05, bounds=(-2.0, 2.0),
                               floor=comparison_floor(30, 200))
    assert cmp.ci_low < 0 < cmp.ci_high


def _narrow_feature_shift():
    """20 features; one of them narrow (sd 0.01) shifted by 4 of its sds on the live inputs."""
    rng = np.random.default_rng(0)
    ref, live = rng.normal(0, 1, (1000, 20)), rng.normal(0, 1, (400, 20))
    ref[:, 3], live[:, 3] = rng.normal(0, 0.01, 1000), rng.normal(0.04, 0.01, 400)
    return ref, live


def test_input_drift_of_one_narrow_feature_is_found_by_the_feature_tests():
    from swiglu_audit.checks.drift import INPUT_DRIFT
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.methods.drift import input_drift_p
    from swiglu_audit.verdicts.risk import judged_finding

    ref, live = _narrow_feature_shift()
    mmd = mmd_permutation_test(ref, live, 200, 400, 0)
    features = feature_drift(ref, live, 0.025)
    assert mmd["p_value"] > 0.2  # the MMD alone: no drift, PASS
    assert features["min_adjusted_p"] < 1e-100 and features["drifted_features"] == [3]
    combined = input_drift_p(mmd["p_value"], features["min_adjusted_p"])
    assert combined == {"p_value": pytest.approx(2 * features["min_adjusted_p"]), "tests": 2, "decided_by": "ks"}
    policy = {**DEFAULT_POLICY, "drift_alpha": 0.05}
    assert judged_finding(INPUT_DRIFT, [], combined["p_value"], policy, "p").status == "WARN"
    # alpha is split between the two tests: each decides at alpha / 2
    assert input_drift_p(0.03, 0.5) == {"p_value": pytest.approx(0.06), "tests": 2, "decided_by": "mmd"}
    assert judged_finding(INPUT_DRIFT, [], input_drift_p(0.03, 0.5)["p_value"], policy, "p").status == "PASS"
    assert input_drift_p(0.03) == {"p_value": 0.03, "tests": 1, "decided_by": "mmd"}  # no feature tests (images)
    assert input_drift_p(0.7, 0.9)["p_value"] == 1.0
