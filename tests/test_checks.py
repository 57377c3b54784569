import numpy as np
import pytest
import torch

from swiglu_audit.checks.adversarial import pgd_correct
from swiglu_audit.checks.numerical import FP16_MAX, fp16_parity
from swiglu_audit.checks.ood import auroc, far_ood_set
from swiglu_audit.checks.poisoning import flip_labels
from swiglu_audit.data import load_digits_data
from swiglu_audit.nn import ModelConfig, build_model
from swiglu_audit.train import Recipe, train_model


@pytest.fixture(scope="module")
def trained():
    data = load_digits_data()
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    train_model(model, data.x_train, data.y_train, Recipe(epochs=5), 0, torch.device("cpu"))
    return model, data


def test_zero_budget_gives_clean_accuracy_and_attack_lowers_it(trained):
    model, data = trained
    x, y = data.x_test[:100], data.y_test[:100]
    clean, robust, _ = pgd_correct(model, x, y, eps=0.0, steps=5, seed=0)
    assert np.array_equal(clean, robust) and clean.mean() > 0.9
    clean2, robust2, cost = pgd_correct(model, x, y, eps=0.3, steps=10, seed=0)
    assert robust2.mean() < clean2.mean() - 0.3
    assert not (robust2 & ~clean2).any()  # robust implies clean
    assert cost["forward_backward_passes"] == 1000


def test_attack_restores_train_mode_and_is_seeded(trained):
    model, data = trained
    model.train()
    a = pgd_correct(model, data.x_test[:50], data.y_test[:50], 0.1, 3, seed=7)[1]
    assert model.training
    model.eval()
    b = pgd_correct(model, data.x_test[:50], data.y_test[:50], 0.1, 3, seed=7)[1]
    assert np.array_equal(a, b) and not model.training


def test_flip_labels_rate_and_never_the_true_class():
    y = torch.arange(1000) % 10
    poisoned, mask = flip_labels(y, 0.2, 10, seed=3)
    assert int(mask.sum()) == 200
    assert bool((poisoned[mask] != y[mask]).all()) and bool((poisoned[~mask] == y[~mask]).all())
    assert torch.equal(flip_labels(y, 0.2, 10, seed=3)[0], poisoned)
    with pytest.raises(ValueError):
        flip_labels(y, 1.0, 10, seed=0)


def test_far_ood_set_is_in_range_and_seeded():
    a, b = far_ood_set(40, (1, 8, 8), seed=0), far_ood_set(40, (1, 8, 8), seed=0)
    assert a.shape == (40, 1, 8, 8) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert far_ood_set(6, (3, 8, 8)).shape == (6, 3, 8, 8)


def test_auroc_by_hand_including_ties():
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0  # perfect separator
    assert auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert auroc([0.5, 0.5], [0.5, 0.5]) == 0.5  # all equal
    # pairs: (0.9>0.5) (0.9>0.2) (0.5=0.5 -> 1/2) (0.5>0.2) => 3.5 / 4
    assert auroc([0.9, 0.5], [0.5, 0.2]) == pytest.approx(0.875)
    with pytest.raises(ValueError):
        auroc([], [0.1])


def test_fp16_parity_flags_activations_past_the_float16_range(trained):
    model, data = trained
    ok = fp16_parity(model, data.x_test[:64])
    assert ok["finite"] and ok["headroom"] > 100 and ok["flips"].mean() < 0.05
    import copy
    blown = copy.deepcopy(model)
    with torch.no_grad():
        for ffn in blown.ffns:
            ffn.gate_proj.weight.mul_(300.0)
            ffn.up_proj.weight.mul_(300.0)
    bad = fp16_parity(blown, data.x_test[:64])
    assert bad["ffn_absmax"] > FP16_MAX and bad["headroom"] < 1
