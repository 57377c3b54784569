"""The relabel census: relabelled samples found without recovering a trigger, on images and tabular rows."""

import numpy as np
import pytest
import torch
from conftest import audit_users_data

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


@pytest.fixture(scope="module")
def bar_backdoor(digits):
    """A three-pixel bar down the middle of the image, where most digits have strokes (the trigger
    scan's blind spot on digits), on 3% of the training set, relabelled 2; a model trained on it."""
    def bar(x):
        x = x.clone()
        x[..., 2:5, 4] = 1.0
        return x
    x, y, truth = _planted(digits.x_train, digits.y_train, bar, target=2)
    return x, y, truth, _trained(x, y, 10, digits.input_shape, digits.x_val, digits.y_val)


def test_a_trigger_over_the_strokes_is_found_without_recovering_it(bar_backdoor):
    """The model learns this bar weakly (attack success 0.48): what the group shares moves 23% of
    the other classes' inputs to class 2 beyond the class's own values, under a FAIL's 25%, and the
    group is four times any other class's: a lead that lists the poison."""
    x, y, truth, model = bar_backdoor
    found = census(model, x, y, 10, CPU)
    assert found.target is None and found.lead == 2, found.summary()
    group = found.groups[2]
    assert group.how == "stamped" and 0.05 <= group.transfer < required_transfer(len(group.indices))
    assert len(group.indices) >= 2 * max(len(g.indices) for c, g in found.groups.items() if c != 2)
    precision, recall = _scores(found.flags, truth)
    assert precision >= 0.6 and recall >= 0.8, (precision, recall)  # measured: 0.74 and 1.00
    # the samples it lists look like the classes the poison came from, not like a 2
    assert sum(group.sources.values()) == len(group.indices) and 2 not in group.sources


def test_on_a_set_larger_than_its_sample_the_census_lists_the_whole_named_class(bar_backdoor, monkeypatch):
    """Past QUERY_LIMIT rows the census measures a sample; the class it names is then measured
    whole, so the FAIL lists the poison outside the sample too."""
    import swiglu_audit.methods.relabel_census as module

    x, y, truth, model = bar_backdoor
    monkeypatch.setattr(module, "QUERY_LIMIT", 600)
    monkeypatch.setattr(module, "POOL_LIMIT", 900)
    found = census(model, x, y, 10, CPU)
    assert found.lead == 2, found.summary()
    precision, recall = _scores(found.flags, truth)
    # 600 of 1078 rows queried: recall about 0.56 at most unless the class is measured whole
    assert precision >= 0.5 and recall >= 0.8, (precision, recall)
    assert set(np.flatnonzero(found.flags)) == set(found.groups[2].indices.tolist())


def test_clean_digits_name_no_class(digits):
    model = _trained(digits.x_train, digits.y_train, 10, digits.input_shape, digits.x_val, digits.y_val)
    found = census(model, digits.x_train, digits.y_train, 10, CPU)
    assert found.target is None and found.lead is None and not found.flags.any()
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
    clean = census(clean_model, x[train], y[train], 5, CPU)
    assert clean.target is None and clean.lead is None and not clean.flags.any()


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
    # a class of a few rows: each of its values is "a part" of it, held by one row; none is shared
    tiny = np.concatenate([labels, [3, 3, 3, 3]])
    assert not shared_coordinates(np.concatenate([rows, rng.random((4, 6)).astype(np.float32) * 10]), tiny, 3).any()


def _scan_result(flags, target, census_flags, census_target, lead=None, neighbours=0.0, cohesion=1.0):
    """A cached scan result's shape (measure.poisoning._trigger_scan), made by hand."""
    flags, census_flags = np.array(flags, dtype=bool), np.array(census_flags, dtype=bool)
    return {"flags": flags, "target": target, "target_neighbours": np.where(flags, neighbours, np.nan),
            "class_cohesion": cohesion, "evidence_carries": np.zeros(len(flags), dtype=bool),
            "census": {"target": census_target, "lead": lead}, "census_flags": census_flags}


def test_a_planted_kind_is_found_only_where_the_first_fail_names_its_class_and_scored_on_what_is_listed():
    from swiglu_audit.measure.poisoning import listed_samples, planted_found

    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    trigger_scan = [1, 1, 1, 0, 0, 0, 0, 0]
    census_group = [0, 1, 1, 1, 1, 0, 0, 0]
    # both name the planted class: the finding lists both, and the power is scored on that
    both = _scan_result(trigger_scan, 2, census_group, 2)
    assert listed_samples(both).tolist() == [True] * 5 + [False] * 3
    power = planted_found(both, truth, 2)
    assert power["decided"] and power["recall"] == 1.0 and power["precision"] == 0.8 and power["found_by"] == "relabel census"
    # the census names another class: its FAIL comes first and names that class, so no power
    other = planted_found(_scan_result(trigger_scan, 2, [0, 0, 0, 0, 1, 1, 1, 0], 5), truth, 2)
    assert not other["decided"] and not other["target_found"] and other["recall"] == 0.0
    # the census names none: the trigger scan's relabelled group decides
    alone = planted_found(_scan_result(trigger_scan, 2, [0] * 8, None), truth, 2)
    assert alone["decided"] and alone["found_by"] == "trigger scan" and alone["recall"] == 0.75
    # ... but not where its flagged samples look like the class (a natural shortcut): flagged, no power
    natural = planted_found(_scan_result(trigger_scan, 2, [0] * 8, None, neighbours=0.9), truth, 2)
    assert not natural["decided"] and natural["target_found"]
    # a census lead is listed beside the trigger scan's flags, and is no FAIL
    lead = _scan_result([0] * 8, None, census_group, None, lead=2)
    assert listed_samples(lead).tolist() == census_group and not planted_found(lead, truth, 2)["decided"]


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
    """The scan's findings of an audit of the user's own table; one seed (the scan reads each
    model's first seed only), a one-kind panel."""
    _, doc = audit_users_data(pytester, "table", TABULAR_DATA, factory, "training_set_scan or training_set_verdict",
                              panel=("corner_patch",), seeds=(0,))
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
    scans = [f for f in verdicts if f["check"] == "training_set_scan"]
    assert len(scans) == 2
    verdict = next(f for f in verdicts if f["check"] == "training_set_verdict")
    assert all(m["suspected_target"] == 0 for m in verdict["details"]["per_model"])
    for f in scans:
        assert "look like other classes" in f["reason"] and f["details"]["relabel_census"]["target"] == 0
        assert f["details"]["suspected_target"] == 0
        listed = set(f["details"]["relabel_census"]["indices"])  # positions in the user's own x_train
        # measured 0.65 and 0.42 (chance: 0.15, the poison's share of class 0); the FAIL lists the
        # samples to inspect, and on rows this noisy a poisoned row's neighbours often include a 0
        precision, recall = len(listed & planted) / len(listed), len(listed & planted) / len(planted)
        assert precision >= 0.5 and recall >= 0.3, (f["id"], precision, recall)
    verdicts = _tabular_audit(pytester, "clean")
    assert len(verdicts) == 3 and all(f["status"] != "FAIL" for f in verdicts), [f["reason"] for f in verdicts]


def _colour_square_on_clutter(n=1400, side=16, seed=0):
    """Ten classes told apart only by the colour of a 4 x 4 square in the middle of three-channel
    images, over a random background colour and three random rectangles: input-space neighbours
    follow the clutter, so many samples of a class look like other classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.empty((n, 3, side, side), dtype="float32")
    for i in range(n):
        img = np.ones((3, side, side), dtype="float32") * rng.uniform(0.2, 0.8, (3, 1, 1))
        for _ in range(3):
            y0, x0 = rng.integers(0, side - side // 4, 2)
            h, w = rng.integers(side // 10 + 1, side // 3, 2)
            img[:, y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, (3, 1, 1))
        img[:, 6:10, 6:10] = np.array([y[i] / 9.0, 1 - y[i] / 9.0, 0.5])[:, None, None]
        x[i] = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_a_class_feature_under_clutter_is_not_taken_for_poison():
    """Clean data whose class is a small colour square under a large varied background: class 9's
    group (samples whose neighbours are other classes') "adds" class 9's own colour to them, which
    moves a third of the other classes' inputs to 9 (over the 25% a FAIL needs, so the census used
    to name class 9 here). The rest of class 9 holds the same colour against the same look-alikes,
    so the added form's control moves them as much and nothing is named."""
    x, y = _colour_square_on_clutter()
    model = _trained(x[:1200], y[:1200], 10, (3, 16, 16), x[1200:], y[1200:], ffn="swiglu")
    found = census(model, x[:1200], y[:1200], 10, CPU)
    assert found.target is None and found.lead is None and not found.flags.any(), found.summary()
    group = found.groups[9]
    # without the control this group would name class 9 (measured: 0.34 moved above a base of 0)
    assert group.moved["added"] - group.base >= required_transfer(len(group.indices)), found.summary()
    assert group.moved["added_control"] >= group.moved["added"] - 0.05
    assert group.transfer < 0.05


def test_the_added_forms_control_keeps_only_what_the_rest_of_the_class_holds_too():
    from swiglu_audit.methods.relabel_census import _own_part

    perturbation = torch.tensor([0.5, -0.4, 0.3, 0.2, 0.0])
    own = torch.tensor([0.2, -0.9, -0.3, 0.0, 0.7])
    # same direction: the smaller offset; opposite or none: nothing
    assert torch.allclose(_own_part(perturbation, own), torch.tensor([0.2, -0.4, 0.0, 0.0, 0.0]))
