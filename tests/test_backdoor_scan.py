"""The trigger scan's sample stage on triggers it is not told about, and on clean data."""

import numpy as np
import pytest
import torch

from swiglu_audit.methods.backdoor_scan import _sample_evidence, _target_label_shares, _upper_group, reverse_engineer, scan
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")
NOISE = torch.from_numpy(np.random.default_rng(99).random((1, 8, 8))).float()


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _trained(x, y, digits, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    train_model(model, x, y, Recipe(epochs=30), seed, CPU, digits.x_val, digits.y_val)
    return model.eval()


def test_the_upper_of_two_separated_groups_and_nothing_for_one_spread():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.uniform(0.01, 0.02, 30), rng.uniform(0.8, 1.0, 70)])
    assert _upper_group(two, 0.9).tolist() == [False] * 30 + [True] * 70
    assert _upper_group(-two, 0.9).tolist() == [True] * 30 + [False] * 70  # the lower group, negated
    assert not _upper_group(rng.uniform(0.2, 1.0, 100), 0.9).any()  # one spread: no group set apart
    assert not _upper_group(two, 0.999).any()  # split, but not as cleanly as asked
    assert not _upper_group(np.full(10, 0.5), 0.9).any()


def test_a_blended_trigger_is_found_by_the_samples_that_carry_it(digits):
    """20% of a fixed noise image blended over 5% of the training set, relabelled 3: no patch for a
    mask to cover, and poisoned samples need not leave the class when a region is neutralised."""
    x, y = digits.x_train.clone(), digits.y_train.clone()
    rng = np.random.default_rng(0)
    planted = rng.choice(np.flatnonzero(y.numpy() != 3), int(round(0.05 * len(y))), replace=False)
    x[planted] = 0.8 * x[planted] + 0.2 * NOISE
    y[planted] = 3
    result = scan(_trained(x, y, digits), x, y, digits.n_classes, CPU)
    assert result.target == 3
    truth = np.zeros(len(y), dtype=bool)
    truth[planted] = True
    hits = int((result.flags & truth).sum())
    assert hits / result.flags.sum() >= 0.9 and hits / truth.sum() >= 0.8, (hits, result.flags.sum(), truth.sum())
    assert result.evidence["carries"][planted].mean() >= 0.8  # found by the pattern they carry
    assert set(np.flatnonzero(result.flags)) <= set(np.flatnonzero(y.numpy() == 3))
    # relabelled inputs of other classes: without the trigger's region they look like those classes
    neighbours = result.target_neighbours[result.flags & truth]
    assert np.median(neighbours) <= 0.2 and np.isnan(result.target_neighbours[~result.flags]).all()
    assert result.class_cohesion >= 0.8  # the class's own samples look like it


def test_a_clean_classs_own_shortcut_flags_no_sample(digits):
    """On clean digits Neural Cleanse can name a class whose real strokes are a small "trigger"
    (class 2 in the benchmark's clean models). Whether or not the anomaly index names it, the
    sample stage run on that class's recovered trigger must flag none of its samples: they share
    the feature by degrees, not as a planted pattern."""
    model = _trained(digits.x_train, digits.y_train, digits)
    labels = digits.y_train.numpy()
    others = digits.x_train[torch.from_numpy(np.random.default_rng(0).choice(np.flatnonzero(labels != 2), 120,
                                                                               replace=False))]
    trigger = reverse_engineer(model, others, 2, CPU)
    assert trigger.success >= 0.5  # a working "trigger" made of the class's own strokes
    evidence = _sample_evidence(model, digits.x_train, labels, trigger, CPU)
    assert not evidence["rests_on"].any() and not evidence["carries"].any()
    resting = evidence["fall"] > 0.5
    assert resting[labels == 2].any()  # some samples do rest on the strokes
    # ... and, were they flagged, they would look like class 2 themselves without the region: what
    # tells a natural shortcut (or clean-label poison) from relabelled poison
    assert np.median(_target_label_shares(digits.x_train, labels, np.flatnonzero(resting), trigger)) >= 0.8


def test_a_class_below_the_anomaly_threshold_is_named_only_when_its_samples_carry_the_trigger(monkeypatch):
    """The naming rule on its own: strong model-level evidence names a class; weaker evidence
    (index above LEAD_INDEX) needs a group of samples that carry the trigger; samples that only
    rest on it (what a clean class's own strokes also give) do not name it."""
    from swiglu_audit.methods import backdoor_scan

    n = 50
    carried = {4: 5, 6: 0}  # class -> samples that carry its trigger
    rested = {4: 0, 6: 20}  # class -> samples that only rest on it

    def evidence(model, x, labels, trigger, device):
        out = backdoor_scan._no_evidence(n)
        out["carries"][:carried.get(trigger.target, 0)] = True
        out["rests_on"][:rested.get(trigger.target, 0)] = True
        return out

    monkeypatch.setattr(backdoor_scan, "_sample_evidence", evidence)

    def named(index, success=1.0):
        triggers = [backdoor_scan.Trigger(c, np.zeros((2, 2)), np.zeros((1, 2, 2)), 1.0, success) for c in range(10)]
        return backdoor_scan._suspected_target(None, None, np.zeros(n), triggers, np.array(index), CPU)[0]

    base = [0.0] * 10
    assert named([*base[:2], 2.5, *base[3:]]) == 2  # anomalous enough alone, whatever its samples
    assert named([*base[:4], 1.5, *base[5:]]) == 4  # weaker, confirmed by 5 samples carrying it
    assert named([*base[:6], 1.5, *base[7:]]) is None  # weaker, 20 samples only resting on it
    assert named([*base[:4], 0.4, *base[5:]]) is None  # too weak to look at
    assert named([*base[:4], 2.5, *base[5:]], success=0.3) is None  # a trigger that does not work


def test_the_scan_optimises_every_digits_class_in_one_pass_and_large_inputs_alone():
    """Digits (30 KB of inputs a class): all ten classes in one pass, not the four the attacks'
    512-row ceiling allowed (1.4x slower, bench/scan-groups-cpu.json); 32x32 colour inputs (1.5 MB
    a class): one class a pass, where arithmetic is the cost."""
    from torch import nn

    from swiglu_audit.methods.backdoor_scan import classes_per_group, inputs_per_step

    digits_inputs = [torch.rand(inputs_per_step(), 1, 8, 8)] * 10
    assert classes_per_group(build_model(ModelConfig(family="mlp", ffn="swiglu")), digits_inputs, CPU) >= 10
    cifar_like = [torch.rand(inputs_per_step(), 3, 32, 32)] * 10
    wide = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert classes_per_group(wide, cifar_like, CPU) == 1
