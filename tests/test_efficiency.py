"""The efficiency suite's numbers against hand counts, a direct timer and synthetic curves."""

import time

import pytest
import torch
from torch import nn

from swiglu_audit.measure.efficiency import mean_curve, to_target
from swiglu_audit.methods.efficiency import Timer, count_flops, first_reaching, paired_inference_timings, training_memory_bytes
from swiglu_audit.report.tradeoff import tradeoff_section
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_flop_count_agrees_with_a_hand_count():
    model, batch = _mlp(), 5
    x = torch.rand(batch, 8)
    # forward: 2 * B * (8*16 + 16*4) multiply-adds counted as two FLOPs each
    assert count_flops(lambda: model(x)) == 2 * batch * (8 * 16 + 16 * 4)

    def step():
        nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    # backward: both weight gradients (8*16 and 16*4) and the second layer's input gradient
    # (16*4); the first layer's input needs no gradient
    assert count_flops(step) == 2 * batch * (8 * 16 + 16 * 4) + 2 * batch * (8 * 16 + 16 * 4 + 16 * 4)


def test_training_records_counted_flops_and_a_learning_curve():
    model = _mlp()
    x, y = torch.rand(40, 8), torch.randint(0, 4, (40,))
    record = train_model(model, x, y, Recipe(epochs=3, batch_size=16), 0, CPU, x[:10], y[:10])
    per_example = 2 * (8 * 16 + 16 * 4) + 2 * (8 * 16 + 16 * 4 + 16 * 4)
    assert record["train_flops_per_example"] == per_example
    curve = record["curve"]
    # steps 1 and 2 (powers of two inside the first epoch), then every epoch's end (3 steps an epoch)
    assert [p["step"] for p in curve] == [1, 2, 3, 4, 6, 8, 9]
    assert [p["examples"] for p in curve] == [16, 32, 40, 56, 80, 112, 120]
    assert all(p["flops"] == per_example * p["examples"] for p in curve)
    seconds = [p["seconds"] for p in curve]
    assert seconds == sorted(seconds) and seconds[-1] <= record["seconds"] + 1e-9
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["history"][-1]["val_accuracy"] == curve[-1]["val_accuracy"]


@pytest.mark.parametrize("xs, ys, target, expected", [
    ([10, 20, 30], [0.2, 0.6, 0.9], 0.7, 20 + 10 * (0.1 / 0.3)),  # interpolated between 20 and 30
    ([10, 20, 30], [0.8, 0.9, 0.95], 0.5, 10),  # the first point already reaches it
    ([10, 20, 30], [0.2, 0.3, 0.4], 0.5, None),  # never reached
    ([10, 20, 30], [0.2, 0.5, 0.5], 0.5, 20),  # reached exactly at a point
    ([10, 20, 30, 40], [0.2, 0.7, 0.5, 0.9], 0.6, 10 + 10 * (0.4 / 0.5)),  # the first crossing counts
])
def test_steps_to_target_on_synthetic_curves(xs, ys, target, expected):
    got = first_reaching(xs, ys, target)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_a_seed_that_misses_the_target_gets_its_budget_as_a_lower_bound():
    curve = [{"step": s, "flops": 100.0 * s, "seconds": 0.1 * s, "val_accuracy": a}
             for s, a in ((1, 0.1), (2, 0.3), (4, 0.5))]
    missed = to_target(curve, 0.9)
    assert missed == {"reached": False, "first_point": False, "step": 4.0, "flops": 400.0, "seconds": pytest.approx(0.4),
                      "step_bracket": [4.0, 4.0], "flops_bracket": [400.0, 400.0], "seconds_bracket": [pytest.approx(0.4)] * 2}
    hit = to_target(curve, 0.4)
    assert hit["reached"] and hit["step"] == pytest.approx(3.0) and hit["flops"] == pytest.approx(300.0)
    # where the crossing lies is all the points tell: between the second and the third
    assert hit["step_bracket"] == [2.0, 4.0] and hit["flops_bracket"] == [200.0, 400.0] and not hit["first_point"]
    early = to_target(curve, 0.05)
    assert early["first_point"] and early["step_bracket"] == [1.0, 1.0]
    assert mean_curve([curve, curve], "flops", "val_accuracy")[1] == {"flops": 200.0, "value": 0.3}


class _Sleeper(nn.Module):
    """A model whose forward pass takes a known time."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        time.sleep(self.seconds)
        return x.flatten(1)[:, :2] + self.weight


def test_timer_agrees_with_a_direct_timer():
    with Timer(CPU) as t:
        started = time.perf_counter()
        time.sleep(0.03)
        direct = time.perf_counter() - started
    assert direct <= t.seconds <= direct + 0.05  # the timer's span holds the direct one's
    timings = paired_inference_timings(_Sleeper(0.02), _Sleeper(0.005), torch.rand(64, 8), CPU, repeats=3)
    slow, fast = timings["latency"]
    assert len(slow) == len(fast) == 3
    # sleep never returns early, so the lower ends are sure (and catch the two models' timings
    # swapped); the upper ends leave room for a busy machine
    assert all(0.02 <= s < 0.5 for s in slow) and all(0.005 <= f < 0.5 for f in fast)
    assert all(64 / 0.5 < r <= 64 / 0.02 for r in timings["throughput"][0])


def test_training_memory_counts_parameters_and_saved_activations_without_touching_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = training_memory_bytes(model, torch.rand(8, 8), torch.zeros(8, dtype=torch.long))
    large = training_memory_bytes(model, torch.rand(16, 8), torch.zeros(16, dtype=torch.long))
    n_params = sum(p.numel() for p in model.parameters())
    assert small["parameters"] == large["parameters"] == 4 * n_params
    assert small["total"] == 4 * small["parameters"] + small["activations"]
    assert small["activations"] > 0
    # activations grow with the batch (batch norm's per-feature statistics do not)
    assert 1.8 * small["activations"] < large["activations"] <= 2 * small["activations"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched
    assert all(p.grad is None for p in model.parameters())


def _comparison(check, baseline, value, low, high, significant, aspect=""):
    return {"id": f"s.{check}[cand-vs-{baseline}]{aspect}", "suite": "s", "check": check,
            "models": ["cand", baseline], "value": value, "ci_low": low, "ci_high": high,
            "details": {"comparison": {"significant": significant}}}


def test_tradeoff_plot_and_sentence_come_from_the_comparisons():
    findings = [
        _comparison("flops_to_target_vs_baseline", "b1", -0.2, -0.3, -0.1, True),  # the candidate saves 20%
        _comparison("worst_case_robust_accuracy_vs_baseline", "b1", -0.05, -0.08, -0.02, True, "[linf]"),
        _comparison("worst_case_robust_accuracy_vs_baseline", "b1", 0.3, 0.2, 0.4, True, "[l2]"),  # not plotted
        _comparison("backdoor_attack_success_vs_baseline", "b1", 0.1, 0.05, 0.15, True),  # worse: up to down
        _comparison("flops_to_target_vs_baseline", "b2<x>", 0.1, -0.05, 0.25, False),
    ]
    html = tradeoff_section(findings, {"cand"})
    assert html.count("<circle") == 2  # b1: robust accuracy and backdoor; b2 has no robustness finding
    assert "needs -20% to -20% of the baselines" in html and "significantly fewer against 1" in html
    assert "worst-case robust accuracy (Linf): -0.050 to -0.050 (1 significantly worse, 0 significantly better)" in html
    assert "backdoor success (sign flipped): -0.100 to -0.100 (1 significantly worse" in html
    assert "b2<x>" not in html
    assert tradeoff_section(findings, {"nobody"}) == ""


@pytest.mark.parametrize("ci, status", [((-0.4, -0.25), "PASS"), ((-0.1, 0.05), "FAIL"), ((-0.3, -0.1), "WARN")])
def test_a_required_efficiency_gain_passes_fails_or_is_inconclusive(ci, status):
    from swiglu_audit.checks.efficiency import EFFICIENCY_COMPARISONS
    from swiglu_audit.verdicts.risk import Status, apply_modifiers, make_finding

    info = EFFICIENCY_COMPARISONS["flops_to_target"]
    finding = make_finding(info, ["c", "b"], Status.PASS, "measured", "t", value=sum(ci) / 2, ci=ci)
    facts = {"n_seeds": 3, "candidate": "c", "candidate_missed": [], "at_first_point": {}}
    # the candidate must save at least 20% of the FLOPs
    judged = apply_modifiers(info, finding, facts, {"min_efficiency_gain": 0.2})
    assert judged.status == status and "min_efficiency_gain = 0.2" in judged.reason
    one_seed = apply_modifiers(info, finding, {**facts, "n_seeds": 1}, {"min_efficiency_gain": 0.2})
    assert one_seed.status == ("WARN" if status == "PASS" else status)
    censored = apply_modifiers(info, finding, {**facts, "candidate_missed": [2]}, {"min_efficiency_gain": 0.2})
    assert censored.status == ("WARN" if status == "PASS" else status)
    assert ("lower bound" in censored.reason) == (status == "PASS")  # a cap changes only a better status


class _NoMatmul(nn.Module):
    """Only elementwise arithmetic: nothing torch's FLOP counter counts."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return x.flatten(1)[:, :4] * self.scale


def test_a_model_without_counted_flops_records_none_rather_than_zero():
    x, y = torch.rand(32, 8), torch.randint(0, 4, (32,))
    record = train_model(_NoMatmul(), x, y, Recipe(epochs=1, batch_size=16), 0, CPU, x[:8], y[:8])
    assert not record["train_flops_per_example"]
    assert all(p["flops"] is None for p in record["curve"]) and all(p["step"] for p in record["curve"])
    assert to_target(record["curve"], 0.0)["flops"] is None  # the suite then skips FLOPs, with the reason


def test_a_candidate_that_missed_the_target_cannot_pass_a_compute_comparison():
    from swiglu_audit.checks.efficiency import EFFICIENCY_COMPARISONS
    from swiglu_audit.verdicts.risk import Status, apply_modifiers, make_finding

    info = EFFICIENCY_COMPARISONS["steps_to_target"]
    finding = make_finding(info, ["c", "b"], Status.PASS, "measured", "t", value=-0.1, ci=(-0.2, 0.0))
    judged = apply_modifiers(info, finding, {"candidate": "c", "candidate_missed": [1], "at_first_point": {}}, {})
    assert judged.status == "WARN" and "seed(s) [1]" in judged.reason and "lower bound" in judged.reason
    assert apply_modifiers(info, finding, {"candidate": "c", "candidate_missed": [], "at_first_point": {}}, {}) is finding
    # a target reached at the first curve point leaves the step unmeasured: no PASS either
    early = apply_modifiers(info, finding, {"candidate": "c", "candidate_missed": [], "at_first_point": {"b<x>": [0]}}, {})
    assert early.status == "WARN" and "first point" in early.reason and "efficiency_target_accuracy" in early.reason
