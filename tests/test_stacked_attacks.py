"""Stacked attacks: every row runs through its own member's weights whatever subset an attack
passes, each member's attack is its lone attack's statistical twin, and the seeds' results are
cached one entry per seed, shared by a stacked and a lone run."""

import numpy as np
import pytest
import torch
from torch import nn

from swiglu_audit.methods.attack_registry import AttackParams
from swiglu_audit.methods.attacks import run_attack
from swiglu_audit.methods.stacked_attacks import STACKABLE, attack_members
from swiglu_audit.methods.stacked_members import StackedMembers, stack_for_attack
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")
PARAMS = AttackParams(eps=0.15, steps=5, apgd_steps=5, square_queries=200)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


@pytest.fixture(scope="module")
def trained(digits):
    """Two MLPs of different seeds, trained briefly: right on most test inputs, and breakable."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
        train_model(model, digits.x_train, digits.y_train, Recipe(epochs=4), seed, CPU)
        models.append(model.eval())
    return models


def _blind(like: nn.Module) -> nn.Module:
    """`like`'s architecture answering class 3 whatever its input: nothing can break it, and a row
    routed to it by mistake cannot be broken either."""
    torch.manual_seed(0)
    blind = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    blind.load_state_dict(like.state_dict())
    with torch.no_grad():
        for name, p in blind.named_parameters():
            p.zero_()
            if name == "head.bias":
                p[3] = 10.0
    return blind.eval()


def test_every_row_runs_through_its_own_member_in_any_route(trained, digits):
    """An unsorted route with unequal groups: each row's output and input gradient are its own
    member's, and a row's gradient does not reach any other row."""
    x = digits.x_test[:30].clone()
    stacked = StackedMembers(trained)
    route = torch.tensor([1, 0, 0, 1, 1, 1, 0] * 4 + [1, 1])
    xs = x.clone().requires_grad_(True)
    with stacked.routed(route):
        out = stacked(xs)
    (grad,) = torch.autograd.grad(out[:, 2].sum(), xs)
    for i, member in enumerate(route.tolist()):
        xi = x[i:i + 1].clone().requires_grad_(True)
        alone = trained[member](xi)
        (alone_grad,) = torch.autograd.grad(alone[:, 2].sum(), xi)
        assert torch.allclose(out[i], alone[0], atol=1e-5)
        assert torch.allclose(grad[i], alone_grad[0], atol=1e-5)
    with pytest.raises(ValueError, match="route names 3 rows"), stacked.routed(route[:3]):
        stacked(x)


@pytest.mark.parametrize("attack", sorted(STACKABLE - {"cw_l2"}))
def test_a_stacked_attack_attacks_each_member_through_its_own_weights(trained, digits, attack):
    """Member 0 answers one class whatever its input, member 1 is a trained MLP. Stacked, in
    several batches (so that a routing kept from one batch to the next would show): the blind
    member is never broken, and the trained one is broken as its lone attack breaks it. Were a
    row of member 1 run through member 0, the attack on it would fail and its robust accuracy
    would stay at its clean accuracy."""
    x, y = digits.x_test[:90], digits.y_test[:90]
    members = [_blind(trained[1]), trained[1]]
    stacked = stack_for_attack(members, x[:8])
    blind, model = attack_members(members, stacked, attack, x, y, PARAMS, 10, seed=0, batch_size=30)
    assert np.array_equal(blind["robust"], blind["clean"]) and blind["clean"].sum() > 0
    lone = run_attack(trained[1], attack, x, y, PARAMS, 10, seed=0)
    assert np.array_equal(model["clean"], lone["clean"])
    broken, broken_alone = (model["clean"] & ~model["robust"]).sum(), (lone["clean"] & ~lone["robust"]).sum()
    assert broken_alone >= 10  # the lone attack breaks this model on these inputs
    assert abs(int(broken) - int(broken_alone)) <= max(4, 0.25 * broken_alone), (attack, broken, broken_alone)
    # each member's passes are its own: the blind one is attacked only where it is right
    if attack in {"fgsm", "pgd", "pgd_l2"}:  # whole-batch attacks: every row, every step
        assert model["cost"]["backward_passes"] == lone["cost"]["backward_passes"]
        assert blind["cost"]["backward_passes"] == model["cost"]["backward_passes"]


def test_fgsm_stacked_gives_each_members_lone_result(trained, digits):
    """FGSM draws nothing: stacked, each member's examples and verdicts are its lone ones."""
    x, y = digits.x_test[:120], digits.y_test[:120]
    stacked = stack_for_attack(trained, x[:8])
    together = attack_members(trained, stacked, "fgsm", x, y, PARAMS, 10, seed=0, return_examples=True)
    for model, result in zip(trained, together):
        lone = run_attack(model, "fgsm", x, y, PARAMS, 10, seed=0, return_examples=True)
        assert np.array_equal(result["robust"], lone["robust"])
        assert torch.allclose(result["examples"], lone["examples"], atol=1e-6)
    with pytest.raises(ValueError, match="one by one"):
        attack_members(trained, stacked, "autoattack", x, y, PARAMS, 10, seed=0)


def test_the_seeds_attacked_stacked_are_cached_per_seed_and_a_lone_run_reads_them(tmp_path, monkeypatch):
    """Stacked (the model's seeds stack: one attack on all of them), then lone on the same cache:
    the lone run computes nothing, and reads each seed's own entry; the stacked run's records say
    how each seed was attacked, and a seed added later is attacked alone."""
    from swiglu_audit.config import build_config
    from swiglu_audit.measure import adversarial
    from swiglu_audit.session import AuditSession

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")
    config = build_config({"seeds": [0, 1], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                           "cache_dir": str(tmp_path), "training": {"epochs": 2},
                           "adversarial": {"n_examples": 40, "attacks": ["fgsm", "pgd", "apgd_ce", "square"]}},
                          profile="quick")
    name = "swiglu-mlp"
    first = AuditSession(config)
    stacked = adversarial.seeds_attacks(first, name, first.zoo.models(name))
    assert first.cache.stats.result_misses == 2
    assert all(cost.get("stacked") for _, record in stacked for cost in record["costs"])
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    again = AuditSession(config)
    lone = adversarial.seeds_attacks(again, name, again.zoo.models(name))
    assert (again.cache.stats.result_misses, again.cache.stats.result_hits) == (0, 2)
    for (a, _), (b, _) in zip(stacked, lone):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # each seed's results are its own: its clean correctness is its own model's
    x, y = again.data.evaluation_subset("test", 40)  # the attacked inputs
    for (tensors, _), model in zip(stacked, again.zoo.models(name)):
        with torch.no_grad():
            assert np.array_equal(tensors["clean"].numpy(), (model.module.eval()(x).argmax(1) == y).numpy())
    wider = adversarial.seeds_attacks(again, name, again.zoo.models(name, seeds=(0, 1, 2)))
    assert again.cache.stats.result_misses == 1
    assert not any(cost.get("stacked") for cost in wider[2][1]["costs"])


def test_an_attack_judges_a_batchnorm_model_in_eval_mode_and_leaves_its_statistics(digits):
    """torchattacks puts a model it found in train mode back into it after each call: the attack's
    wrapper must be in eval mode, or the judging that follows runs BatchNorm on the adversarial
    batch's own statistics and overwrites its running ones (dropout would be on, too)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    train_model(model, digits.x_train, digits.y_train, Recipe(epochs=2), 0, CPU)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = digits.x_test[:64], digits.y_test[:64]
    for attack in ("pgd", "apgd_ce", "square"):
        result = run_attack(model, attack, x, y, PARAMS, 10, seed=0, batch_size=32, return_examples=True)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), attack
        with torch.no_grad():
            judged = (model(result["examples"]).argmax(1) == y).numpy() & result["clean"]
        assert np.array_equal(result["robust"], judged), attack
        assert not model.training


def test_models_that_cannot_run_stacked_are_refused_not_crashed_on(trained, digits):
    """Members in different modes (stack_module_state refuses them) and a lone member are named
    NotStackable; CW-L2 and AutoAttack do not run stacked (CW stops on the whole batch's loss)."""
    from swiglu_audit.methods.stacked_members import NotStackable

    twin = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    twin.load_state_dict(trained[0].state_dict())
    with pytest.raises(NotStackable):
        stack_for_attack([trained[0], twin.train()], digits.x_test[:8])
    with pytest.raises(NotStackable, match="single model"):
        stack_for_attack(trained[:1], digits.x_test[:8])
    stacked = stack_for_attack(trained, digits.x_test[:8])
    for attack in ("cw_l2", "autoattack"):
        assert attack not in STACKABLE
        with pytest.raises(ValueError, match="one by one"):
            attack_members(trained, stacked, attack, digits.x_test[:8], digits.y_test[:8], PARAMS, 10, seed=0)


def test_the_full_profiles_attacks_run_seed_by_seed_side_by_side(tmp_path):
    """AutoAttack and CW-L2 cannot run stacked: where they are configured, a stacking model's seeds
    are attacked one by one, each in a part of its own; without them, as one stacked part."""
    from swiglu_audit.config import build_config
    from swiglu_audit.measure import adversarial
    from swiglu_audit.session import AuditSession

    for attacks, parts in ((["fgsm", "pgd", "apgd_t", "square"], ["seeds"]),
                           (["fgsm", "pgd", "cw_l2"], ["seed-0", "seed-1"]),
                           (["pgd", "autoattack"], ["seed-0", "seed-1"])):
        audit = AuditSession(build_config({"seeds": [0, 1], "variants": ["swiglu", "relu"], "families": ["mlp"],
                                           "cache_dir": str(tmp_path), "adversarial": {"attacks": attacks}},
                                          profile="quick"))
        audit.zoo.follow_choice("swiglu-mlp", True)
        assert adversarial.attacks_stack(audit, "swiglu-mlp") == (parts == ["seeds"])
        assert [p.name for p in adversarial.planned_parts(audit, "swiglu-mlp")] == parts


class _Nudge:
    """A deterministic Linf attack whose outcome on an input does not depend on the rest of the
    batch: each pixel moved by eps away from mid-grey."""

    def __init__(self, eps):
        self.eps = eps

    def __call__(self, x, y):
        return (x + self.eps * torch.sign(x - 0.5)).clamp(0, 1)


def _session(tmp_path, attacks, **adversarial):
    from swiglu_audit.config import build_config
    from swiglu_audit.session import AuditSession

    config = build_config({"seeds": [0, 1], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                           "cache_dir": str(tmp_path), "training": {"epochs": 2},
                           "adversarial": {"n_examples": 120, "attacks": attacks, **adversarial}}, profile="quick")
    return AuditSession(config)


def test_a_cascaded_attack_runs_on_the_inputs_still_unbroken_and_gives_its_own_result_there(tmp_path, monkeypatch):
    """A deterministic attack after FGSM and PGD runs only on the inputs both failed on: its
    result there is exactly its result run on every input, it is credited with nothing it did
    not break first, and its record says how many inputs it attacked."""
    from swiglu_audit.measure import adversarial
    from swiglu_audit.methods import attack_registry

    monkeypatch.setitem(attack_registry.ATTACKS, "nudge", attack_registry.Attack(
        "Linf", "white-box", lambda ta, m, a: _Nudge(a.eps), lambda params, n: (0, 1)))
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    audit = _session(tmp_path, ["nudge", "fgsm", "pgd"])  # configured first, cascaded after the two
    models = audit.zoo.models("swiglu-mlp")
    x, y = audit.data.evaluation_subset("test", 120)
    results = adversarial._attack_seeds(audit, "swiglu-mlp", models, x, y)
    for model, out in zip(models, results):
        assert list(out["per_attack"]) == ["fgsm", "pgd", "nudge"]
        alive = out["clean"] & out["per_attack"]["fgsm"] & out["per_attack"]["pgd"]
        everywhere = run_attack(model.module, "nudge", x, y, PARAMS, 10, seed=0)["robust"]
        assert np.array_equal(out["per_attack"]["nudge"], everywhere & alive)
        cost = next(c for c in out["costs"] if c["attack"] == "nudge")
        assert cost["inputs_attacked"] == int(alive.sum()) < 120 and cost["forward_passes"] <= 2 * int(alive.sum())
        assert np.array_equal(out["worst"], alive & everywhere)
        assert out["broken_by"]["nudge"] == int((alive & ~everywhere).sum())


def test_stacked_cascaded_attacks_run_on_what_the_earlier_ones_left_and_the_black_box_last(tmp_path, monkeypatch):
    """Stacked seeds: APGD-CE on the inputs any seed still held after FGSM and PGD, Square (set
    first) after every white-box attack; each seed's result is cut to its own unbroken inputs,
    and the APGD passes are those of the inputs attacked, not of all 120."""
    from swiglu_audit.measure import adversarial

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")
    audit = _session(tmp_path, ["square", "fgsm", "pgd", "apgd_ce"])
    models = audit.zoo.models("swiglu-mlp")
    x, y = audit.data.evaluation_subset("test", 120)
    results = adversarial._attack_seeds(audit, "swiglu-mlp", models, x, y)
    held = np.logical_or.reduce([r["clean"] & r["per_attack"]["fgsm"] & r["per_attack"]["pgd"] for r in results])
    for out in results:
        per = out["per_attack"]
        assert list(per) == ["fgsm", "pgd", "apgd_ce", "square"]
        alive = out["clean"] & per["fgsm"] & per["pgd"]
        assert not (per["apgd_ce"] & ~alive).any() and not (per["square"] & ~per["apgd_ce"]).any()
        apgd = next(c for c in out["costs"] if c["attack"] == "apgd_ce")
        assert apgd["inputs_attacked"] == int(alive.sum()) and apgd.get("stacked")
        assert 0 < apgd["backward_passes"] <= audit.config.adversarial.apgd_steps * 2 * int(held.sum())
        assert np.array_equal(out["worst"], per["square"])


@pytest.mark.parametrize("stack", ["1", "0"])
def test_a_cascaded_attack_with_no_input_left_attacks_none_and_breaks_nothing(tmp_path, monkeypatch, stack):
    """At a budget where PGD breaks every input, APGD-CE and Square have nothing left to attack:
    they run on no input, stacked or one by one, and the worst case is PGD's."""
    from swiglu_audit.measure import adversarial

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", stack)
    audit = _session(tmp_path, ["pgd", "apgd_ce", "square"], eps=0.9, budgets=[0.9])
    models = audit.zoo.models("swiglu-mlp")
    x, y = audit.data.evaluation_subset("test", 120)
    for out in adversarial._attack_seeds(audit, "swiglu-mlp", models, x, y):
        assert not out["per_attack"]["pgd"].any()
        for attack in ("apgd_ce", "square"):
            cost = next(c for c in out["costs"] if c["attack"] == attack)
            assert cost["inputs_attacked"] == 0 and cost["backward_passes"] == 0 and cost["forward_passes"] == 0
            assert not out["per_attack"][attack].any()
        assert out["broken_by"]["apgd_ce"] == out["broken_by"]["square"] == 0
