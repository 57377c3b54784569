import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from swiglu_audit.checks.sanity import SANITY_CHECKS
from swiglu_audit.methods.attack_registry import AttackParams
from swiglu_audit.methods.attacks import PassCounter, input_gradient_stats, output_stats, run_attack, worst_case
from swiglu_audit.methods.numerical import FP16_MAX, half_parity
from swiglu_audit.methods.ood_metrics import auroc
from swiglu_audit.methods.poisoning import flip_labels
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model


@pytest.fixture(scope="module")
def trained():
    data = load_digits_data()
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    train_model(model, data.x_train, data.y_train, Recipe(epochs=5), 0, torch.device("cpu"))
    return model, data


CFG = AttackParams(eps=0.1, eps_l2=0.5, steps=5, square_queries=100, cw_steps=10, apgd_steps=5)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_l2", "cw_l2", "apgd_ce", "apgd_dlr", "apgd_t", "square", "autoattack"])
def test_every_attack_stays_within_budget_and_in_the_unit_box(trained, attack):
    model, data = trained
    x, y = data.x_test[:40], data.y_test[:40]
    out = run_attack(model, attack, x, y, CFG, 10, seed=0, return_examples=True)
    delta = (out["examples"] - x).flatten(1)
    eps = CFG.eps_l2 if attack in ("pgd_l2", "cw_l2") else CFG.eps
    norms = delta.norm(dim=1) if attack in ("pgd_l2", "cw_l2") else delta.abs().max(1).values
    assert float(norms.max()) <= eps + 1e-5
    assert float(out["examples"].min()) >= 0 and float(out["examples"].max()) <= 1
    assert not (out["robust"] & ~out["clean"]).any()  # robust implies clean
    assert out["cost"]["forward_passes"] > 0 and out["cost"]["seconds"] >= 0


def test_zero_budget_gives_clean_accuracy_and_a_real_attack_lowers_it(trained):
    model, data = trained
    x, y = data.x_test[:100], data.y_test[:100]
    zero = run_attack(model, "pgd", x, y, CFG, 10, seed=0, eps=0.0)
    assert np.array_equal(zero["clean"], zero["robust"]) and zero["clean"].mean() > 0.9
    strong = run_attack(model, "pgd", x, y, CFG, 10, seed=0, eps=0.3, steps=10)
    assert strong["robust"].mean() < strong["clean"].mean() - 0.3
    # PGD: one forward and one backward pass per example per step, plus the final check
    assert strong["cost"]["backward_passes"] == 100 * 10


def test_attack_restores_train_mode_and_is_seeded(trained):
    model, data = trained
    x, y = data.x_test[:50], data.y_test[:50]
    model.train()
    a = run_attack(model, "pgd", x, y, CFG, 10, seed=7)["robust"]
    assert model.training
    model.eval()
    b = run_attack(model, "pgd", x, y, CFG, 10, seed=7)["robust"]
    assert np.array_equal(a, b) and not model.training


def test_worst_case_needs_every_attack_to_fail_and_credits_the_first_break():
    clean = np.array([True, True, True, False])
    robust, broken, who = worst_case({"a": np.array([True, False, True, False]),
                                      "b": np.array([True, False, False, False])}, clean)
    assert robust.tolist() == [True, False, False, False]
    assert broken == {"clean": 1, "a": 1, "b": 1}
    assert who == ["robust", "a", "b", "clean"]


def test_pass_counter_counts_forward_and_backward_examples_while_active(trained):
    model, data = trained
    with PassCounter(model) as counter:
        model(data.x_test[:5])  # not active: not counted
        counter.active = True
        x = data.x_test[:7].clone().requires_grad_(True)
        model(x).sum().backward()
        with torch.no_grad():
            model(data.x_test[:3])
    model(data.x_test[:4])  # hook removed
    assert counter.forward_examples == 10 and counter.backward_examples == 7
    assert not model._forward_hooks


def test_output_stats_flag_probabilities_and_randomness(trained):
    model, data = trained
    x = data.x_test[:20]
    assert not output_stats(model, x)["probabilities"]
    assert output_stats(nn.Sequential(model, nn.Softmax(dim=1)), x)["probabilities"]
    noisy = nn.Sequential(model, nn.Dropout(0.5))
    noisy.eval()
    assert output_stats(noisy, x)["max_abs_diff_between_runs"] == 0.0  # dropout is off in eval

    class Random(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
        def forward(self, x):
            return self.inner(x + 0.01 * torch.randn_like(x))
    assert output_stats(Random(), x)["max_abs_diff_between_runs"] > 0


def test_gradient_stats_see_masked_gradients(trained):
    model, data = trained

    class Quantised(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
        def forward(self, x):
            return self.inner(torch.round(x * 16) / 16)  # zero gradient almost everywhere
    x, y = data.x_test[:30], data.y_test[:30]
    assert input_gradient_stats(model, x, y)["zero_share"] == 0.0
    assert input_gradient_stats(Quantised(), x, y)["zero_share"] == 1.0


SHAPE = (3, 400)  # seeds x attacked examples: enough that a clean gap's interval lies within the tolerances


def _result(**overrides):
    ones = np.ones(SHAPE, dtype=bool)
    base = {"clean": ones, "pgd": ones & False, "fgsm": ones & False, "pgd_double": ones & False,
            "large": ones & False, "per_attack": {"pgd": ones & False, "square": ones & False},
            "curve": {0.1: ones & False, 0.2: ones & False}, "n_classes": 10,
            "gradients": [{"finite": True, "zero_share": 0.0}],
            "outputs": [{"probabilities": False, "max_abs_diff_between_runs": 0.0}]}
    return {**base, **overrides}


POLICY = {"masking_tolerance": 0.03, "chance_margin": 0.1, "black_box_margin": 0.05, "max_zero_gradient_share": 0.05}


@pytest.mark.parametrize("check, broken", [
    ("iterative_beats_single_step", {"pgd": np.ones(SHAPE, dtype=bool)}),
    ("monotone_in_budget", {"curve": {0.1: np.zeros(SHAPE, dtype=bool), 0.2: np.ones(SHAPE, dtype=bool)}}),
    ("large_budget_reaches_chance", {"large": np.ones(SHAPE, dtype=bool)}),
    ("more_iterations_change_little", {"pgd": np.ones(SHAPE, dtype=bool)}),
    ("black_box_not_stronger", {"per_attack": {"pgd": np.ones(SHAPE, dtype=bool), "square": np.zeros(SHAPE, dtype=bool)}}),
    ("gradients_finite_nonzero", {"gradients": [{"finite": True, "zero_share": 0.5}]}),
    ("returns_logits", {"outputs": [{"probabilities": True, "max_abs_diff_between_runs": 0.0}]}),
    ("deterministic_eval", {"outputs": [{"probabilities": False, "max_abs_diff_between_runs": 0.1}]}),
])
def test_each_sanity_check_passes_a_sane_result_and_trips_on_its_symptom(check, broken):
    assert SANITY_CHECKS[check].judge(_result(), POLICY)[0]
    passed, _, reason, _ = SANITY_CHECKS[check].judge(_result(**broken), POLICY)
    assert not passed and reason


@pytest.mark.parametrize("examples, expected", [(100, None), (3000, True)])
def test_a_sanity_gap_within_tolerance_passes_only_when_its_interval_is(examples, expected):
    """Doubling PGD's iterations breaks 2% more examples (tolerance 3%): on 3 x 100 attacked
    examples the interval reaches past 3%, so the check is inconclusive (WARN, no masking flag);
    on 3 x 3000 it lies within, a PASS. It was a PASS on the point estimate either way."""
    from swiglu_audit.checks.sanity import masking_failures

    rng = np.random.default_rng(0)
    pgd = np.ones((3, examples), dtype=bool)
    double = pgd.copy()
    for seed in range(3):
        double[seed, rng.choice(examples, size=examples // 50, replace=False)] = False
    result = _result(pgd=pgd, pgd_double=double, fgsm=pgd, large=~pgd, curve={0.1: pgd, 0.2: pgd},
                     clean=pgd, per_attack={"pgd": pgd, "square": pgd})
    passed, drop, reason, interval = SANITY_CHECKS["more_iterations_change_little"].judge(result, POLICY)
    assert drop == pytest.approx(0.02) and passed is expected, reason
    assert ("inconclusive" in reason) == (expected is None) and "CI [" in reason
    # the interval that decided is the finding's own (ci_low, ci_high), not only words
    assert interval.value == drop and (interval.ci_high > POLICY["masking_tolerance"]) == (expected is None)
    assert "more_iterations_change_little" not in masking_failures(result, POLICY)
    # a point estimate beyond the tolerance fails whatever the interval (a masking symptom)
    double[:, : examples // 20] = False
    assert SANITY_CHECKS["more_iterations_change_little"].judge(_result(pgd=pgd, pgd_double=double), POLICY)[0] is False


def test_the_budget_curve_check_reports_the_step_that_decided_and_needs_two_budgets():
    """The finding's value and interval are one step's: the one whose interval reaches highest
    where none rises past the tolerance (robust accuracy falling 1.0 -> 0.9 -> 0.85 here); a curve
    of one budget shows no rise at all, so it is not measured (WARN), not a PASS."""
    rng = np.random.default_rng(1)
    first = np.ones((3, 400), dtype=bool)
    second = first & ~(rng.random((3, 400)) < 0.1)
    third = second & ~(rng.random((3, 400)) < 0.06)
    check = SANITY_CHECKS["monotone_in_budget"]
    verdict = check.judge(_result(curve={0.05: first, 0.1: second, 0.2: third}), POLICY)
    assert verdict.passed is True and verdict.statistic == verdict.interval.value < 0
    assert verdict.interval.ci_low <= verdict.statistic <= verdict.interval.ci_high
    assert f"{verdict.interval.ci_high:+.3f}" in verdict.sentence
    alone = check.judge(_result(curve={0.1: first}), POLICY)
    assert alone.passed is None and alone.statistic is None and "not measured" in alone.sentence


def test_a_sanity_check_the_attacks_cannot_answer_warns_and_is_no_masking_failure():
    """Without a black-box Linf attack the black-box check measured nothing: its finding is WARN,
    naming what to add (it was a PASS), and it does not mark the model masked."""
    from swiglu_audit.checks.adversarial import SANITY
    from swiglu_audit.checks.sanity import masking_failures
    from swiglu_audit.verdicts.risk import decided_finding

    result = _result(per_attack={"pgd": np.ones(SHAPE, dtype=bool)})
    passed, _, reason, interval = SANITY_CHECKS["black_box_not_stronger"].judge(result, POLICY)
    assert passed is None and "not measured" in reason and '"square"' in reason and interval is None
    assert masking_failures(result, POLICY) == []
    facts = {"passed": passed, "sentence": reason, "question": "q", "tolerance_key": None}
    assert decided_finding(SANITY, ["m"], facts, POLICY, value=0.0).status == "WARN"
    assert decided_finding(SANITY, ["m"], {**facts, "passed": True}, POLICY, value=0.0).status == "PASS"
    assert decided_finding(SANITY, ["m"], {**facts, "passed": False}, POLICY, value=0.0).status == "FAIL"


def test_a_minimum_norm_attacks_examples_beyond_the_budget_are_not_invalid_examples():
    """CW-L2 returns its smallest adversarial example, whatever its norm: those beyond eps_l2 are
    counted apart and do not cap the L2 worst case as misbehaviour; a bounded attack's still do."""
    from swiglu_audit.checks.adversarial import invalid_examples

    costs = [[{"attack": "cw_l2", "out_of_budget": 40, "non_finite": 0},
              {"attack": "pgd_l2", "out_of_budget": 0, "non_finite": 1}]] * 2
    assert invalid_examples(costs, ["pgd_l2", "cw_l2"]) == {"out_of_budget": 0, "non_finite": 2,
                                                             "beyond_budget_minimum_norm": 80}
    costs[0] = [{"attack": "pgd_l2", "out_of_budget": 3, "non_finite": 0}]
    assert invalid_examples(costs, ["pgd_l2", "cw_l2"])["out_of_budget"] == 3


def test_flip_labels_rate_and_never_the_true_class():
    y = torch.arange(1000) % 10
    poisoned, mask = flip_labels(y, 0.2, 10, seed=3)
    assert int(mask.sum()) == 200
    assert bool((poisoned[mask] != y[mask]).all()) and bool((poisoned[~mask] == y[~mask]).all())
    assert torch.equal(flip_labels(y, 0.2, 10, seed=3)[0], poisoned)
    with pytest.raises(ValueError):
        flip_labels(y, 1.0, 10, seed=0)


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
    ok = half_parity(model, data.x_test[:64])
    assert ok["finite"] and ok["headroom"] > 100 and ok["flips"].mean() < 0.05
    import copy
    blown = copy.deepcopy(model)
    with torch.no_grad():
        for ffn in blown.ffns:
            ffn.gate_proj.weight.mul_(300.0)
            ffn.up_proj.weight.mul_(300.0)
    bad = half_parity(blown, data.x_test[:64])
    assert bad["ffn_absmax"] > FP16_MAX and bad["headroom"] < 1


def test_within_budget_rejects_examples_outside_the_ball_or_the_box():
    from swiglu_audit.methods.attack_registry import AttackSpec
    from swiglu_audit.methods.attacks import within_budget

    x = torch.full((3, 1, 2, 2), 0.5)
    adv = x.clone()
    adv[1, 0, 0, 0] = 0.65  # Linf 0.15 > eps 0.1
    adv[2, 0, 0, 0] = 1.05  # outside [0, 1] (and outside the ball)
    spec = AttackSpec("pgd", "Linf", 0.1, "white-box")
    assert within_budget(x, adv, spec).tolist() == [True, False, False]
    l2 = AttackSpec("pgd_l2", "L2", 0.2, "white-box")
    assert within_budget(x, x + 0.09, l2).tolist() == [True, True, True]  # L2 = 0.18
    assert within_budget(x, x + 0.11, l2).tolist() == [False, False, False]  # L2 = 0.22


def _textbook_pgd(model, x, y, eps, alpha, steps, seed):
    """PGD-Linf as in Madry et al. 2018, written out: random start in the ball, signed-gradient
    ascent on the cross-entropy, projection onto the ball and the unit box after every step."""
    gen = torch.Generator().manual_seed(seed)
    adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=gen)).clamp(0, 1)
    model.eval()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = (adv.detach() + alpha * grad.sign()).clamp(x - eps, x + eps).clamp(0, 1)
    with torch.no_grad():
        return ((model(adv).argmax(1) == y) & (model(x).argmax(1) == y)).numpy()


def test_harness_pgd_agrees_with_a_textbook_pgd_loop_within_sampling_error(trained):
    model, data = trained
    x, y = data.x_test[:300], data.y_test[:300]
    cfg = dataclasses.replace(CFG, steps=10)
    harness = run_attack(model, "pgd", x, y, cfg, 10, seed=0)["robust"]
    textbook = _textbook_pgd(model, x, y, eps=0.1, alpha=2.5 * 0.1 / 10, steps=10, seed=0)
    # two random starts of the same attack: paired difference within ~3 standard errors
    diff = harness.astype(float) - textbook.astype(float)
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert abs(diff.mean()) <= max(3 * se, 0.02), (harness.mean(), textbook.mean())
    assert 0.05 < textbook.mean() < harness.mean() + 0.1  # a real attack, not a no-op


def test_the_linf_worst_case_is_never_weaker_than_apgd_ce_alone(trained):
    from swiglu_audit.methods.attack_registry import threat_attacks

    model, data = trained
    x, y = data.x_test[:100], data.y_test[:100]
    attacks = ["fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "square"]
    runs = {a: run_attack(model, a, x, y, CFG, 10, seed=0) for a in attacks}
    linf = threat_attacks(attacks, "linf")
    assert linf == ["fgsm", "pgd", "apgd_ce", "apgd_dlr", "square"] and threat_attacks(attacks, "l2") == ["pgd_l2"]
    robust, _, _ = worst_case({a: runs[a]["robust"] for a in linf}, runs["pgd"]["clean"])
    assert not (robust & ~runs["apgd_ce"]["robust"]).any()  # per example, not only on average
    assert robust.mean() <= runs["apgd_ce"]["robust"].mean()


def test_bpda_and_eot_wrappers_give_the_gradient_a_masked_model_hides(trained):
    from swiglu_audit.methods.attacks import ExpectationOverRandomness, GradientConnected, StraightThrough

    model, data = trained
    x, y = data.x_test[:60], data.y_test[:60]

    class Thresholded(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
        def forward(self, v):
            return self.inner((v > 0.5).float())

    masked = Thresholded().eval()
    assert input_gradient_stats(masked, x, y)["zero_share"] == 1.0  # cut out of the graph
    xg = x.clone().requires_grad_(True)
    GradientConnected(masked)(xg).sum().backward()
    assert float(xg.grad.abs().sum()) == 0.0  # tied, but the gradient it has is zero
    plain = run_attack(masked, "pgd", x, y, CFG, 10, seed=0)["robust"].mean()
    bpda = run_attack(masked, "pgd", x, y, CFG, 10, seed=0,
                      attack_model=StraightThrough(masked, model))["robust"].mean()
    assert bpda < plain - 0.1
    eot = ExpectationOverRandomness(model, samples=3)
    assert torch.allclose(eot(x), model(x), atol=1e-6)  # a deterministic model: EOT is the identity


def test_a_new_black_box_attack_is_one_registry_entry_that_the_plan_and_the_sanity_check_pick_up(monkeypatch):
    """Adding a black-box attack touches the registry alone: the plan counts its declared cost, the
    black-box sanity check holds the white-box attacks to it, and it runs through torchattacks."""
    import torch.nn.functional as F
    import torchattacks

    from swiglu_audit.config import build_config
    from swiglu_audit.measure.adversarial import planned_passes as attack_passes
    from swiglu_audit.methods import attack_registry

    class UniformNoise(torchattacks.attack.Attack):
        """A throwaway query attack: the best of a few random corners of the Linf ball."""

        def __init__(self, model, eps, tries):
            super().__init__("UniformNoise", model)
            self.eps, self.tries = eps, tries

        def forward(self, images, labels):
            best, worst_loss = images.clone(), torch.full((len(images),), -1e9)
            for _ in range(self.tries):
                adv = (images + self.eps * torch.sign(torch.randn_like(images))).clamp(0, 1)
                with torch.no_grad():
                    loss = F.cross_entropy(self.get_logits(adv), labels, reduction="none")
                better = loss > worst_loss
                best[better], worst_loss[better] = adv[better], loss[better]
            return best

    monkeypatch.setitem(attack_registry.ATTACKS, "uniform_noise", attack_registry.Attack(
        "Linf", "black-box", lambda ta, m, a: UniformNoise(m, a.eps, tries=7), lambda params, n: (0, 7)))
    config = build_config({"profile": "quick", "adversarial": {"attacks": ["pgd", "uniform_noise"]}})
    with_it, without = attack_passes(config, 10), attack_passes(
        build_config({"profile": "quick", "adversarial": {"attacks": ["pgd"]}}), 10)
    assert with_it[1] - without[1] == 7 and with_it[0] == without[0]

    # the sanity check reads the registry's kind: a black-box attack far stronger than PGD trips it
    ones = np.ones(SHAPE, dtype=bool)
    result = _result(per_attack={"pgd": ones, "uniform_noise": ones & False})
    passed, gap, reason, _ = SANITY_CHECKS["black_box_not_stronger"].judge(result, POLICY)
    assert not passed and gap == 1.0 and "uniform_noise" in reason
    assert SANITY_CHECKS["black_box_not_stronger"].judge(_result(per_attack={"pgd": ones & False, "uniform_noise": ones}), POLICY)[0]

    # and it runs like any registered attack, its examples checked against its budget
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,))
    out = run_attack(model, "uniform_noise", x, y, CFG, 3, seed=0)
    assert out["robust"].shape == (12,) and out["cost"]["out_of_budget"] == 0


# --- the training-set scan's power, its anomaly rule, and the clean model's base rate -------------

_SCAN_FACTS = {"target": None, "n_flagged": 0, "share": 0.0, "anomaly_index": 1.0, "mask_l1": None,
               "trigger_success": None, "min_learned_backdoor": 0.1, "flagged_by_other_models": [], "likeness": None,
               "n_relabelled": None, "n_carrying": 0, "census": None, "min_fail_group": 3}


def _planted_power(n_found: int, n_planted: int = 15, n_train: int = 200) -> dict:
    """planted_found on a scan result that flags `n_found` of the planted samples and 2 clean ones."""
    from swiglu_audit.measure.poisoning import planted_found

    truth = np.zeros(n_train, dtype=bool)
    truth[:n_planted] = True
    flags = np.zeros(n_train, dtype=bool)
    flags[:n_found] = True
    flags[[100, 101]] = True
    result = {"flags": flags, "target": 0, "target_neighbours": np.where(flags, 0.0, np.nan), "class_cohesion": 0.9,
              "evidence_carries": np.zeros(n_train, dtype=bool), "census": {"target": None, "lead": None},
              "census_flags": np.zeros(n_train, dtype=bool)}
    return planted_found(result, truth, 0)


def test_a_panel_kinds_recall_is_judged_by_its_lower_confidence_bound_not_its_point_value():
    """8 of 15 planted samples found is a recall of 0.53 >= min_scan_recall = 0.5, but the low end of
    its 95% Wilson interval is 0.30: the scan's power is not shown, so "nothing found" is no PASS."""
    from scipy.stats import binomtest

    from swiglu_audit.checks.poison_detection import SCAN, wilson_lower

    policy = {"min_trigger_anomaly_index": 3.0, "min_scan_recall": 0.5, "confidence_level": 0.95}
    weak = _planted_power(8)
    assert (weak["hits"], weak["n_poisoned"]) == (8, 15) and weak["recall"] == pytest.approx(8 / 15)
    # the two-sided 95% Wilson interval's low end, as every other PASS is held to (scipy's, independently)
    reference = binomtest(8, 15).proportion_ci(confidence_level=0.95, method="wilson").low
    assert wilson_lower(8, 15, 0.95) == pytest.approx(reference, abs=1e-9) and reference < 0.31
    power = {"rate": 0.03, "target": 0, "kinds": {"corner_patch": weak}}
    status, reason, threshold, _ = SCAN.condition.judge({**_SCAN_FACTS, "power": power}, policy)
    assert status.value == "WARN", reason
    assert "corner_patch: the scan found 8 of 15 planted samples (53%)" in reason and "interval, 0.30, is under" in reason
    assert "the low end of its recall's 95% interval (Wilson" in threshold
    # every planted sample found: the bound (0.80) clears 0.5; the PASS names the one target measured
    strong = _planted_power(15)
    status, reason, _, _ = SCAN.condition.judge(
        {**_SCAN_FACTS, "power": {**power, "kinds": {"corner_patch": strong}}}, policy)
    assert status.value == "PASS", reason
    assert f"15 of 15 planted samples, low end of its 95% interval {wilson_lower(15, 15, 0.95):.2f}" in reason
    assert "(corner_patch) into class 0 at 3% of the training set" in reason
    assert "backdoors into other target classes" in reason
    # a stored record without counts: the point value, and the verdict says so
    stored = {k: v for k, v in weak.items() if k not in ("hits", "n_poisoned")}
    status, reason, _, _ = SCAN.condition.judge(
        {**_SCAN_FACTS, "power": {**power, "kinds": {"corner_patch": stored}}}, policy)
    assert status.value == "PASS" and "its point value only: the power record holds no counts" in reason


def test_the_training_sets_pass_names_the_target_class_its_power_was_measured_for():
    from swiglu_audit.checks.poison_detection import TRAINING_SET_VERDICT

    scans = [{"model": "m", "status": "PASS", "reason": "nothing found", "n_flagged": 0, "suspected_target": None,
              "flagged": [], "scanned": True, "set_aside": False}]
    status, reason, _, _ = TRAINING_SET_VERDICT.condition.judge(
        {"scans": scans, "threat": {"rate": 0.03, "kinds": ["corner_patch", "blend"], "target": 3}},
        {"min_scan_recall": 0.5})
    assert status.value == "PASS"
    assert "(corner_patch, blend) into class 3 at 3% of the training set" in reason
    assert "backdoors into other target classes" in reason and "other rates were not measured" in reason


def test_a_policys_anomaly_index_under_the_scans_own_warns_where_the_scan_names_no_class():
    """The scan names a suspected class only above its ANOMALY_INDEX (2.0); a policy asking for a WARN
    at 1.5 gets one for an index of 1.9 with no class named, and the verdict names the class."""
    from swiglu_audit.checks.poison_detection import SCAN
    from swiglu_audit.measure.poisoning import scan_facts
    from swiglu_audit.methods.backdoor_scan import ANOMALY_INDEX

    n = 50
    index = [0.1, -0.3, 0.4, 0.0, 0.2, -1.0, 0.3, 1.9, -0.2, 0.5]
    assert max(index) < ANOMALY_INDEX
    found = {"flags": np.zeros(n, dtype=bool), "target": None, "target_neighbours": np.full(n, np.nan),
             "class_cohesion": None, "evidence_carries": np.zeros(n, dtype=bool), "anomaly_index": index,
             "mask_l1": [9.0] * 10, "trigger_success": None, "census": None, "census_flags": np.zeros(n, dtype=bool)}
    facts = scan_facts(found, 0.03, 0.5)
    assert facts["anomaly_index"] == 1.9 and facts["anomalous_class"] == 7 and facts["target"] is None
    facts["power"] = {"rate": 0.03, "target": 0, "kinds": {"corner_patch": _planted_power(15)}}
    policy = {"min_trigger_anomaly_index": 1.5, "min_scan_recall": 0.5, "confidence_level": 0.95}
    status, reason, threshold, _ = SCAN.condition.judge(facts, policy)
    assert status.value == "WARN", reason
    assert reason.startswith("inconclusive: class 7 has a recovered trigger") and "1.9 >= min_trigger_anomaly_index = 1.5" in reason
    assert "WARN for a trigger with anomaly index >= min_trigger_anomaly_index = 1.5" in threshold
    assert SCAN.condition.judge(facts, {**policy, "min_trigger_anomaly_index": 2.0})[0].value == "PASS"


def test_the_clean_models_base_rate_fails_only_when_its_whole_interval_is_above_the_policy():
    """max_backdoor_base_rate = 0.3: a clean model sending 13 of 40 triggered inputs (0.33) to the
    target on each of 2 seeds has an interval across 0.3: inconclusive WARN, not FAIL; 36 of 40:
    FAIL; 2 of 40: no change to the verdict."""
    from swiglu_audit.checks.poisoning import BACKDOOR
    from swiglu_audit.config import build_config
    from swiglu_audit.verdicts.risk import judged_finding
    from swiglu_audit.verdicts.stats import Statistics

    policy = build_config({}, profile="standard").policy

    def finding(hits: int):
        base = np.zeros((2, 40), dtype=bool)
        base[:, :hits] = True
        estimate = Statistics(level=0.95).mean(base)
        return estimate, judged_finding(BACKDOOR, ["m"], 0.05, policy, "attack success above the base rate",
                                        ci=(0.0, 0.1), ci_level=0.95,
                                        facts={"base_rate": estimate.to_dict(), "target": 0})

    straddles, warned = finding(13)
    assert straddles.value > 0.3 and straddles.ci_low < 0.3 < straddles.ci_high
    assert warned.status == "WARN" and "inconclusive: the clean model sends 32%" in warned.reason
    assert "straddles max_backdoor_base_rate = 0.3" in warned.reason
    above, failed = finding(36)
    assert above.ci_low > 0.3 and failed.status == "FAIL" and "may already carry a backdoor" in failed.reason
    below, passed = finding(2)
    assert below.ci_high < 0.3 and passed.status == "PASS"


def test_gradient_and_output_statistics_run_in_batches_with_the_same_answer(monkeypatch):
    """They ran over every attacked input in one pass (a user's large model ran out of memory);
    in the attacks' batches they give the same shares."""
    from swiglu_audit.methods import attacks as attack_methods

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.rand(50, 1, 4, 4), torch.randint(0, 3, (50,))
    x[:10] = -1.0  # the input ReLU is dead on these rows: a zero input gradient
    whole = input_gradient_stats(model, x, y), output_stats(model, x)
    monkeypatch.setattr(attack_methods.batching, "batch_size", lambda *a, **k: 7)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    batched = input_gradient_stats(model, x, y), output_stats(model, x)
    assert batched == whole and batched[0]["zero_share"] >= 0.2
    assert max(seen) == 7  # not 50 at once


def test_a_pretrained_sources_transfer_examples_meet_every_seed_of_the_target(monkeypatch):
    """One row per target seed: a pretrained source (one "seed") onto each of three seeds, not one
    row that the worst case then broadcast onto all three; equal seed counts pair k onto k."""
    import types

    import numpy as np

    from swiglu_audit.measure import adversarial as measure

    crafted = {"pretrained": [torch.full((2, 1), 7.0)], "trained": [torch.full((2, 1), float(k)) for k in range(3)]}
    monkeypatch.setattr(measure, "adversarial", lambda audit, name: {"pgd_examples": crafted[name]})
    # the "prediction" records which examples met which target seed
    monkeypatch.setattr(measure, "predicted_as", lambda audit, models, x, y: np.array([[x[0, 0].item(), models[0]]]))
    audit = types.SimpleNamespace(config=types.SimpleNamespace(adversarial=types.SimpleNamespace(n_examples=2)),
                                  data=types.SimpleNamespace(evaluation_subset=lambda split, n: (None, torch.zeros(n))),
                                  zoo=types.SimpleNamespace(models=lambda name: [10, 11, 12] if name != "one" else [10]))
    assert measure.transfer(audit, "pretrained", "target").tolist() == [[7, 10], [7, 11], [7, 12]]
    assert measure.transfer(audit, "trained", "target").tolist() == [[0, 10], [1, 11], [2, 12]]
    assert measure.transfer(audit, "trained", "one").tolist() == [[0, 10]]
