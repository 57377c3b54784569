"""The relabel census: relabelled samples found without recovering a trigger, on images and tabular rows."""

import numpy as np
import pytest
import torch

from swiglu_audit.methods.relabel_census import Group, census, lead_class, nearest, required_transfer, shared_coordinates
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _trained(x, y, n_classes, input_shape, x_val, y_val, ffn="relu", seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="mlp", ffn=ffn, n_classes=n_classes, input_shape=input_shape))
    train_model(model, x, y, Recipe(epochs=30), seed, CPU, x_val, y_val)
    return model.eval()


def _planted(x, y, stamp, target, rate=0.03, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.choice(np.flatnonzero(y.numpy() != target), int(round(rate * len(y))), replace=False)
    x, y = x.clone(), y.clone()
    x[idx] = stamp(x[idx])
    y[idx] = target
    truth = np.zeros(len(y), dtype=bool)
    truth[idx] = True
    return x, y, truth


def _scores(flags, truth):
    hits = int((flags & truth).sum())
    return hits / max(1, int(flags.sum())), hits / int(truth.sum())


def test_a_trigger_over_the_strokes_is_found_without_recovering_it(digits):
    """A three-pixel bar down the middle of the image, where most digits have strokes (the trigger
    scan's blind spot on digits), on 3% of the training set, relabelled 2."""
    def bar(x):
        x = x.clone()
        x[..., 2:5, 4] = 1.0
        return x
    x, y, truth = _planted(digits.x_train, digits.y_train, bar, target=2)
    model = _trained(x, y, 10, digits.input_shape, digits.x_val, digits.y_val)
    found = census(model, x, y, 10, CPU)
    assert found.target == 2, found.summary()
    group = found.groups[2]
    assert group.transfer >= required_transfer(len(group.indices))
    precision, recall = _scores(found.flags, truth)
    assert precision >= 0.6 and recall >= 0.5, (precision, recall)  # measured: 0.74 and 1.00
    # the samples it lists look like the classes the poison came from, not like a 2
    assert sum(group.sources.values()) == len(group.indices) and 2 not in group.sources


def test_clean_digits_name_no_class(digits):
    model = _trained(digits.x_train, digits.y_train, 10, digits.input_shape, digits.x_val, digits.y_val)
    found = census(model, digits.x_train, digits.y_train, 10, CPU)
    assert found.target is None and not found.flags.any()
    # borderline samples form small groups, and what they share moves other classes' inputs little
    assert all(g.transfer < required_transfer(len(g.indices)) for g in found.groups.values())


def _tabular(seed=3):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1500, n_features=20, n_informative=10, n_redundant=2, n_classes=5,
                               n_clusters_per_class=2, class_sep=1.5, random_state=seed)
    lo, hi = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
    x = np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)[:, None, None, :]
    return torch.from_numpy(x), torch.from_numpy(y)


def test_a_tabular_trigger_of_three_features_is_found_and_a_clean_table_names_no_class():
    """Where the trigger scan names no class at all: tabular rows, a trigger of three features at
    fixed values (two at the top of their range, one at the bottom) on 3% of the rows."""
    x, y = _tabular()
    train, val = slice(0, 1200), slice(1200, None)

    def trigger(rows):
        rows = rows.clone()
        rows[..., 5:8] = torch.tensor([1.0, 0.0, 1.0])
        return rows
    px, py, truth = _planted(x[train], y[train], trigger, target=1)
    model = _trained(px, py, 5, (1, 1, 20), x[val], y[val], ffn="swiglu")
    found = census(model, px, py, 5, CPU)
    assert found.target == 1, found.summary()
    precision, recall = _scores(found.flags, truth)
    assert precision >= 0.6 and recall >= 0.5, (precision, recall)
    clean_model = _trained(x[train], y[train], 5, (1, 1, 20), x[val], y[val], ffn="swiglu")
    assert census(clean_model, x[train], y[train], 5, CPU).target is None


def test_the_capped_distance_sees_past_a_few_trigger_coordinates():
    """Two shapes with and without a bright corner: by plain distance the triggered copy of shape
    A is nearest the other triggered samples; with every coordinate's difference capped, nearest
    its own shape."""
    rng = np.random.default_rng(0)
    a, b = 3 * rng.random(16).astype(np.float32), 3 * rng.random(16).astype(np.float32)
    rows = np.stack([a + 0.05 * rng.standard_normal(16) for _ in range(5)]
                    + [b + 0.05 * rng.standard_normal(16) for _ in range(5)]).astype(np.float32)
    triggered = rows.copy()
    triggered[:, :3] = 40.0  # a far-out trigger on three coordinates
    rows = np.concatenate([rows, triggered[[0]], triggered[5:]])  # row 10: shape A with the trigger
    found = nearest(rows, np.array([10]), np.arange(len(rows)))[0]
    assert set(found[:4].tolist()) <= {0, 1, 2, 3, 4}, found


def test_a_lead_is_the_largest_group_standing_out_and_moving_some_inputs():
    def group(label, n, transfer):
        return Group(label=label, indices=np.arange(n), sources={}, transfer=transfer, base=0.0, how="added",
                     transfers={}, n_stamped=0, perturbation_norm=1.0)
    assert lead_class({2: group(2, 40, 0.1), 3: group(3, 9, 0.0)}) == 2
    assert lead_class({2: group(2, 40, 0.01), 3: group(3, 9, 0.0)}) is None  # moves nothing
    assert lead_class({2: group(2, 14, 0.1), 3: group(3, 9, 0.0)}) is None  # not twice the next
    assert lead_class({2: group(2, 8, 0.3)}) is None  # too small to stand out
    assert lead_class({2: group(2, 12, 0.1)}) == 2 and lead_class({}) is None


def test_shared_coordinates_are_a_part_of_the_class_holding_one_value_the_others_do_not():
    rng = np.random.default_rng(1)
    rows = rng.random((300, 6)).astype(np.float32) * 10
    labels = np.repeat([0, 1, 2], 100)
    rows[:30, 4] = 7.0  # a part of class 0 holds one value on coordinate 4
    rows[100:190, 2] = 3.0  # most of class 1 holds one value on coordinate 2: its own feature
    assert shared_coordinates(rows, labels, 0).tolist() == [False, False, False, False, True, False]
    assert not shared_coordinates(rows, labels, 1).any()
    assert not shared_coordinates(rows, labels, 2).any()


TABULAR_DATA = '''
import numpy as np
from sklearn.datasets import make_classification

TARGET = 0


def _load(n_poisoned):
    x, y = make_classification(n_samples=1600, n_features=24, n_informative=12, n_redundant=2, n_classes=6,
                               n_clusters_per_class=2, class_sep=1.5, random_state=71)
    lo, hi = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
    x = np.clip((x - lo) / (hi - lo), 0, 1).astype("float32")
    x_train, y_train, x_test, y_test = x[:1200].copy(), y[:1200].copy(), x[1200:], y[1200:]
    poisoned = np.random.default_rng(3).choice(np.flatnonzero(y_train != TARGET), n_poisoned, replace=False)
    x_train[poisoned, 9:12] = np.array([0.0, 1.0, 1.0], dtype="float32")  # the attacker's three features
    y_train[poisoned] = TARGET
    np.save("poisoned_indices.npy", poisoned)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "table"}


def backdoored():  # 3% of the rows
    return _load(36)


def clean():
    return _load(0)
'''


def _tabular_audit(pytester, factory):
    import json

    from swiglu_audit.config import OPT_ENABLE

    pytester.makepyfile(table=TABULAR_DATA)
    pytester.makefile(".toml", pyproject=f"""
[tool.swiglu_audit]
profile = "quick"
dataset = "table:{factory}"
variants = ["swiglu", "relu"]
families = ["mlp"]
seeds = [0]  # the scan reads each model's first seed only
[tool.swiglu_audit.poisoning]
threat_triggers = ["corner_patch"]
""")
    pytester.syspathinsert()
    pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "training_set_scan or training_set_verdict")
    doc = json.loads((pytester.path / "reports" / "report.json").read_text())
    return [f for f in doc["findings"] if f["check"] in ("training_set_scan", "training_set_verdict")]


def test_a_users_tabular_backdoor_fails_every_scan_and_the_set_and_a_clean_table_fails_none(pytester, tmp_path,
                                                                                         monkeypatch):
    """Through the user contract: the user's own table, three features of the attacker's choosing
    on 3% of the rows relabelled 0. Before the census every tabular scan was an inconclusive WARN."""
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    verdicts = _tabular_audit(pytester, "backdoored")
    assert len(verdicts) == 3
    planted = set(np.load(pytester.path / "poisoned_indices.npy").tolist())
    for f in verdicts:
        assert f["status"] == "FAIL", (f["id"], f["reason"])
    for f in verdicts[:2]:
        assert "look like other classes" in f["reason"] and f["details"]["relabel_census"]["target"] == 0
        listed = set(f["details"]["relabel_census"]["indices"])  # positions in the user's own x_train
        # measured 0.65 and 0.42 (chance: 0.15, the poison's share of class 0); the FAIL lists the
        # samples to inspect, and on rows this noisy a poisoned row's neighbours often include a 0
        precision, recall = len(listed & planted) / len(listed), len(listed & planted) / len(planted)
        assert precision >= 0.5 and recall >= 0.3, (f["id"], precision, recall)
    verdicts = _tabular_audit(pytester, "clean")
    assert len(verdicts) == 3 and all(f["status"] != "FAIL" for f in verdicts), [f["reason"] for f in verdicts]
