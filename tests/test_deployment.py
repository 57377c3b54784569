"""The deployment-precision suite: each metric on hand-made activations, the quantisation schemes
against their definitions, and, through the user contract, a model whose FFN carries outliers
large enough to break int8 against the same model without them."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from swiglu_audit.config import OPT_ENABLE
from swiglu_audit.measure.deployment import growth
from swiglu_audit.methods.quantisation import (
    FP8_MAX,
    fake_int8,
    fake_quantise_fp8,
    fake_quantise_int8,
    quantised_copy,
    served_logits,
)
from swiglu_audit.training.activations import activation_stats, ffn_layers, outlier_point, row_peak_ratios
from swiglu_audit.training.nn import ModelConfig, build_model


def test_activation_stats_on_hand_made_values():
    # 999 values of 1 (sign alternating), one of 500, and 1000 exact zeros (a ReLU's silenced units)
    values = torch.tensor([(-1.0) ** i for i in range(999)] + [500.0] + [0.0] * 1000)
    h = values.reshape(100, 20)
    stats = activation_stats(h)
    assert stats["absmax"] == 500.0
    assert stats["median"] == 1.0  # over the non-zero values: the zeros need no resolution
    assert stats["ratio_to_median"] == 500.0
    assert stats["p999"] == pytest.approx(1.0 + 0.001 * 999 * 499 / 999, rel=0.2)  # quantile interpolates
    flat = values.double()
    centred = flat - flat.mean()
    expected = float((centred ** 4).mean() / (centred ** 2).mean() ** 2)
    assert stats["kurtosis"] == pytest.approx(expected, rel=1e-9)
    assert stats["top_channel"] == 999 % 20  # the column holding 500


def test_kurtosis_is_three_for_a_gaussian_and_the_ratio_grows_with_one_outlier_channel():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4000, 64, generator=g)
    plain = activation_stats(h)
    assert plain["kurtosis"] == pytest.approx(3.0, abs=0.1)
    assert plain["top_channel_ratio"] < 1.5
    h[:, 7] *= 100.0  # one outlier channel, the LLM.int8() picture
    spiked = activation_stats(h)
    assert spiked["top_channel"] == 7 and spiked["top_channel_ratio"] > 50
    assert spiked["ratio_to_median"] > 50 * plain["ratio_to_median"] / 2
    assert spiked["kurtosis"] > 30


def test_row_peak_ratios_and_an_all_zero_layer():
    h = torch.tensor([[0.0, 2.0], [4.0, -8.0]])
    assert row_peak_ratios(h, 2.0).tolist() == [1.0, 4.0]
    zero = activation_stats(torch.zeros(3, 4))
    assert zero["absmax"] == 0.0 and zero["ratio_to_median"] == 0.0


class _Marked(nn.Module):
    """A user's FFN under other names, its down projection marked."""

    def __init__(self):
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 4)
        self.w2.swiglu_audit_ffn = True

    def forward(self, x):
        return self.w2(torch.nn.functional.silu(self.w1(x)) * self.w3(x))


def test_ffn_layers_are_found_by_llama_naming_or_by_the_marker():
    mlp = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    assert list(ffn_layers(mlp)) == ["ffns.0.down_proj", "ffns.1.down_proj"]
    marked = _Marked()
    assert list(ffn_layers(marked)) == ["w2"]
    assert ffn_layers(nn.Sequential(nn.Linear(3, 3))) == {}
    point = outlier_point(marked, torch.randn(5, 4))
    assert set(point) == {"w2"} and point["w2"]["absmax"] > 0


def test_the_int8_and_fp8_roundings_match_their_definitions():
    t = torch.tensor([-2.54, -1.0, 0.004, 0.6, 2.54])
    q = fake_quantise_int8(t)
    step = 2.54 / 127
    assert torch.allclose(q, (t / step).round() * step)
    assert float(q[2]) == 0.0  # below half a step: rounded to zero
    f = fake_quantise_fp8(torch.tensor([448.0, 1.0, 3.0]) * 0.5)
    # scaled so the largest value maps to 448: 224 -> 448 exactly, 0.5 -> 1 exactly, 1.5 -> 3 exactly
    assert f.tolist() == [224.0, 0.5, 1.5]
    assert FP8_MAX == 448.0
    # e4m3 has 3 mantissa bits: 448 * (1 + 1/16) is between two representable values and rounds
    rounded = fake_quantise_fp8(torch.tensor([448.0, 17.0]))
    assert rounded.tolist() == [448.0, 16.0]


def test_int8_dynamic_quantisation_agrees_with_its_simulation_on_a_zoo_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu")).eval()
    x = torch.rand(64, 1, 8, 8)
    shipped, device, how = quantised_copy(model, "int8")
    assert device.type == "cpu"
    reference = served_logits(model, x, torch.device("cpu"))
    real = served_logits(shipped, x, device)
    simulated = served_logits(fake_int8(model), x, torch.device("cpu"))
    scale = float(reference.abs().max())
    # both round to the same int8 grids (torch's activations use an asymmetric 7- or 8-bit grid),
    # so both stay close to float32 and to each other
    assert float((real - reference).abs().max()) < 0.05 * scale
    assert float((simulated - reference).abs().max()) < 0.05 * scale
    assert "quantize_dynamic" in how or "simulated" in how


class _OwnLinear(torch.nn.Module):
    """A linear layer of no type a scheme knows: F.linear on its own parameters."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / n_in ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias)


def test_the_share_of_weights_a_scheme_quantised_is_measured_and_none_is_no_pass():
    """A model whose layers no scheme covers comes back unchanged from "quantisation": its accuracy
    loses nothing, and that PASS would measure nothing. The share is measured; at 0 the finding is
    an inconclusive WARN, and a partly covered model's reason says how much stayed float32."""
    from swiglu_audit.checks.deployment import QUANTISED_ACCURACY
    from swiglu_audit.methods.quantisation import quantised_weight_share
    from swiglu_audit.verdicts.risk import judged_finding

    torch.manual_seed(0)
    covered = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    uncovered = torch.nn.Sequential(torch.nn.Flatten(), _OwnLinear(64, 32), torch.nn.ReLU(), _OwnLinear(32, 10))
    mixed = torch.nn.Sequential(torch.nn.Flatten(), _OwnLinear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    for scheme in ("int8", "fp8"):
        assert quantised_weight_share(covered, quantised_copy(covered, scheme)[0]) == 1.0
        assert quantised_weight_share(uncovered, quantised_copy(uncovered, scheme)[0]) == 0.0
        with torch.no_grad():  # a NaN weight left as it was is unchanged (torch.equal would say changed)
            broken = copy.deepcopy(uncovered)
            broken[1].weight[0, 0] = float("nan")
        assert quantised_weight_share(broken, quantised_copy(broken, scheme)[0]) == 0.0
        # 320 of the 2,368 weight elements sit in the nn.Linear
        assert quantised_weight_share(mixed, quantised_copy(mixed, scheme)[0]) == pytest.approx(320 / 2368)

    policy = {"max_int8_accuracy_drop": 0.02}

    def judged(share):
        return judged_finding(QUANTISED_ACCURACY, ["m"], 0.0, policy, "accuracy lost to int8", ci=(-0.01, 0.01),
                              aspect="int8", facts={"non_finite": False, "weight_share": share})
    assert judged(1.0).status == "PASS" and judged(320 / 2368).status == "PASS"
    nothing = judged(0.0)
    assert nothing.status == "WARN" and "inconclusive: the scheme left every weight of the model as it was" in nothing.reason
    assert judged(None).status == "WARN" and "was not measured" in judged(None).reason
    assert nothing.details["judged"]["modified_by"] == ["nothing quantised"]


def test_growth_names_the_layer_and_the_steps_where_the_ratio_grew_most():
    def point(ratio_a, ratio_b):
        return {"a": {"absmax": ratio_a, "median": 1.0}, "b": {"absmax": ratio_b, "median": 1.0}}
    seed_curves = [[(1, point(2, 3)), (2, point(4, 3)), (4, point(40, 3)), (8, point(50, 3))],
                   [(1, point(2, 3)), (2, point(4, 3)), (4, point(40, 3)), (8, point(50, 3))]]
    grown = growth(seed_curves)
    assert grown["layer"] == "a" and grown["grew_most_between"] == [2, 4]
    assert grown["grew_most_factor"] == pytest.approx(10.0)
    assert grown["first_ratio"] == pytest.approx(2.0) and grown["final_ratio"] == pytest.approx(50.0)
    assert [p["step"] for p in grown["curve"]] == [1, 2, 4, 8]
    assert grown["curve"][0]["ratio"] == pytest.approx(3.0)  # the worst layer at step 1 is b
    assert growth([[], []]) is None


# A user's SwiGLU classifier with the LLaMA naming; the test trains it on digits and hands the
# harness its weights (the audit loads them, it does not train).
USER_FFN_MODELS = '''
import torch
from torch import nn
import torch.nn.functional as F

class FFN(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)
    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

class Classifier(nn.Module):
    def __init__(self, n_classes=10):
        super().__init__()
        self.embed = nn.Linear(64, 48)
        self.ffn = FFN(48, 96)
        self.head = nn.Linear(48, n_classes)
    def forward(self, x):
        h = self.embed(x.flatten(1) * 2 - 1)
        return self.head(h + self.ffn(h))

def make(n_classes):
    return Classifier(n_classes)
'''


def _trained_weights(module_source: str, folder) -> dict:
    """Train the user's classifier on digits for a few hundred steps; its state dict."""
    from sklearn.datasets import load_digits

    namespace: dict = {}
    exec(compile(module_source, "usermodels", "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["make"](10)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(400):
        idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _with_outlier_channels(state: dict, channels=(3, 17, 40), scale: float = 2000.0) -> dict:
    """The same function in float32, with a few FFN hidden channels scaled up and the down
    projection scaled down to match: outliers that set a per-tensor int8 grid's scale."""
    state = {k: v.clone() for k, v in state.items()}
    for c in channels:
        state["ffn.up_proj.weight"][c] *= scale
        state["ffn.down_proj.weight"][:, c] /= scale
    return state


def test_a_model_whose_ffn_outliers_break_int8_fails_and_the_same_model_without_them_does_not(
        tiny_project, write_pyproject):
    from safetensors.torch import save_file

    clean = _trained_weights(USER_FFN_MODELS, tiny_project.path)
    save_file(clean, str(tiny_project.path / "clean.safetensors"))
    save_file(_with_outlier_channels(clean), str(tiny_project.path / "outliers.safetensors"))
    tiny_project.makepyfile(usermodels=USER_FFN_MODELS)
    tiny_project.syspathinsert()
    write_pyproject(tiny_project, (
        '[[tool.swiglu_audit.models]]\nname = "with-outliers"\nfactory = "usermodels:make"\n'
        'role = "candidate"\nweights = "outliers.safetensors"\n\n'
        '[[tool.swiglu_audit.models]]\nname = "well-behaved"\nfactory = "usermodels:make"\n'
        'weights = "clean.safetensors"\n'))
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "deployment")
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    broken = found["deployment.quantised_accuracy[with-outliers][int8]"]
    fine = found["deployment.quantised_accuracy[well-behaved][int8]"]
    assert broken["status"] == "FAIL", broken["reason"]
    assert fine["status"] != "FAIL", fine["reason"]
    # float32 accuracy is the same model's: only the quantised copy lost it
    assert broken["details"]["float_accuracy"] == pytest.approx(fine["details"]["float_accuracy"], abs=0.02)
    assert broken["value"] > 0.1 and broken["ci_low"] > 0.02
    assert broken["details"]["flip_rate"]["value"] > 0.1
    outliers = found["deployment.ffn_activation_outliers[with-outliers]"]
    assert outliers["details"]["layers"]["ffn.down_proj"]["top_channel_ratio"] > 100
    assert found["deployment.ffn_activation_outliers[well-behaved]"]["value"] < outliers["value"] / 100
    # one model: the interval covers the inputs drawn, and the whole of it is above the limit
    assert outliers["status"] == "WARN" and outliers["ci_low"] > 127
    # weights loaded, not trained: no growth over training to report, and the finding says so
    assert "not recorded" in outliers["details"]["growth"]
    assert found["deployment.quantised_accuracy_vs_baseline[with-outliers-vs-well-behaved][int8]"]["status"] != "PASS"
    assert "robust" in broken["details"] and "change" in broken["details"]["robust"]
    assert result.ret == 1
    assert math.isfinite(broken["details"]["quantised_accuracy"]["value"])


def test_the_worst_case_examples_take_the_first_attack_that_broke_each_input():
    import numpy as np

    from swiglu_audit.measure.adversarial import _worst_examples

    pgd = torch.zeros(4, 1)
    clean = np.array([True, True, True, False])
    runs = {"fgsm": {"robust": np.array([True, False, True, False]), "clean": clean, "examples": torch.full((4, 1), 1.0)},
            "square": {"robust": np.array([True, False, False, False]), "clean": clean, "examples": torch.full((4, 1), 2.0)}}
    # input 1: FGSM broke it first; input 2: only Square; input 0: nothing did, PGD's example; input
    # 3: wrong before any attack (the attacks left it as it was), PGD's example too
    assert _worst_examples(runs, pgd).flatten().tolist() == [0.0, 1.0, 2.0, 0.0]


def test_a_dead_relu_layer_gives_finite_peak_ratios_and_a_finite_outlier_interval():
    """A layer whose hidden activation is all zero (median 0) gave infinite ratios, log10 inf, and
    a "NaN or infinite" ERROR in ffn_activation_outliers and ffn_outliers_vs_baseline."""
    from types import SimpleNamespace

    from swiglu_audit.measure.deployment import outliers, peak_ratio_replicates
    from swiglu_audit.verdicts.stats import replicate_estimate

    assert row_peak_ratios(torch.zeros(3, 4), 0.0).tolist() == [0.0, 0.0, 0.0]
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="relu")).eval()
    with torch.no_grad():
        model.ffns[0].up_proj.weight.zero_()  # relu(0) everywhere: a dead layer
    x = torch.rand(32, 1, 8, 8)
    audit = SimpleNamespace(
        config=SimpleNamespace(numerical=SimpleNamespace(n_examples=32)),
        data=SimpleNamespace(evaluation_subset=lambda split, n: (x[:n], torch.zeros(n, dtype=torch.long))),
        device=torch.device("cpu"),
        zoo=SimpleNamespace(models=lambda name: [SimpleNamespace(module=model, record={}, key="k")]),
        memo=lambda key, compute: compute(), cached_arrays=lambda kind, models, settings, code, compute: compute())
    result = outliers(audit, "dead")
    assert result["per_seed"][0]["ffns.0.down_proj"]["median"] == 0.0
    live = result["per_seed"][0]["ffns.1.down_proj"]
    assert live["median"] > 0
    # the live layer alone decides each input's peak ratio
    with torch.no_grad():
        seen = []
        handle = model.ffns[1].down_proj.register_forward_pre_hook(lambda m, i: seen.append(i[0].abs().amax(1)))
        model(x)
        handle.remove()
    expected = torch.log10(seen[0] / live["median"]).numpy()
    assert np.allclose(result["log_peak"][0], expected, rtol=1e-5)
    est = replicate_estimate(result["log_peak"].max(1), peak_ratio_replicates(result["log_peak"], 50, 0), 32)
    assert np.isfinite([est.value, est.ci_low, est.ci_high]).all()
