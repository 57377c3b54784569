import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swiglu_audit.methods.numerical import check_implementation, compare_op, gradcheck_implementation, half_parity, state_difference
from swiglu_audit.training.golden import compare_or_write
from swiglu_audit.training.nn import swiglu as eager_swiglu  # the implementation the zoo's models run


def swapped(gate, up):  # gate and up projections swapped
    return F.silu(up) * gate


def sigmoid_not_silu(gate, up):
    return torch.sigmoid(gate) * up


def naive_fp16_unsafe(gate, up):  # x * sigmoid(x) written out: its backward overflows in float16
    return gate * torch.sigmoid(gate) * up


def test_the_reference_op_passes_the_property_check():
    result = check_implementation(eager_swiglu, max_examples=60)
    assert result["passed"] and result["examples"] == 60 and result["worst_ratio"] <= 1


@pytest.mark.parametrize("impl", [swapped, sigmoid_not_silu])
def test_deliberately_wrong_swiglu_fails_with_a_minimal_example(impl):
    result = check_implementation(impl, max_examples=60)
    assert not result["passed"]
    failure = result["minimal_failure"]
    assert failure["where"] and failure["dtype"] and failure["gate"] is not None
    # shrunk: hypothesis reduces the failing case to a handful of elements
    assert np.asarray(failure["gate"]).size <= 4


def test_non_finite_output_where_the_reference_is_finite_fails():
    def overflowing(gate, up):
        return torch.where(gate > 100, torch.full_like(gate, float("inf")), F.silu(gate) * up)
    gate = torch.tensor([200.0, 1.0])
    up = torch.tensor([1.0, 1.0])
    result = compare_op(overflowing, gate, up)
    assert result["worst_ratio"] == float("inf") and "not finite" in result["where"]


def test_dtype_tolerances_accept_rounding_but_not_errors():
    g = torch.linspace(-6, 6, 50)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert compare_op(eager_swiglu, g.to(dtype), g.to(dtype))["worst_ratio"] <= 1
    assert compare_op(lambda a, b: eager_swiglu(a, b) * 1.01, g.double(), g.double())["worst_ratio"] > 1


def test_gradcheck_passes_the_reference_and_fails_a_wrong_backward():
    assert gradcheck_implementation(eager_swiglu)["passed"]

    class BadBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, gate, up):
            ctx.save_for_backward(gate, up)
            return F.silu(gate) * up

        @staticmethod
        def backward(ctx, grad):
            gate, up = ctx.saved_tensors
            return grad * up * torch.sigmoid(gate), grad * F.silu(gate)  # d/dgate is wrong
    result = gradcheck_implementation(BadBackward.apply)
    assert not result["passed"] and result["error"]


def test_golden_file_created_then_compared_then_regenerated(tmp_path):
    path = tmp_path / "plat" / "m.safetensors"
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    assert compare_or_write(path, logits, "probe", update=False)["action"] == "created"
    same = compare_or_write(path, logits.clone(), "probe", update=False)
    assert same["action"] == "compared" and same["max_deviation"] == 0.0
    perturbed = logits.clone()
    perturbed[3, 4] += 0.5
    moved = compare_or_write(path, perturbed, "probe", update=False)
    assert moved["max_deviation"] == pytest.approx(0.5) and "probe example 3, logit 4" in moved["where"]
    assert compare_or_write(path, perturbed, "probe", update=True)["action"] == "regenerated"
    assert compare_or_write(path, perturbed, "probe", update=False)["max_deviation"] == 0.0
    with pytest.raises(ValueError, match="different probe set"):
        compare_or_write(path, perturbed, "another-probe", update=False)


def test_state_difference_names_the_tensor():
    a = {"w": torch.zeros(3), "b": torch.ones(2)}
    b = {"w": torch.zeros(3), "b": torch.tensor([1.0, 3.0])}
    assert state_difference(a, a) == (0.0, None)
    assert state_difference(a, b) == (2.0, "b")


def test_bf16_autocast_parity_runs_on_cpu():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    result = half_parity(model, torch.rand(16, 1, 8, 8), "bfloat16")
    assert result["finite"] and result["flips"].shape == (16,) and result["max_logit_deviation"] < 0.1


def test_device_parity_of_a_model_with_itself_on_cpu_is_exact():
    from swiglu_audit.methods.numerical import device_parity

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    result = device_parity(model, torch.rand(8, 1, 8, 8))
    assert result["device"] == "cpu" and result["max_logit_deviation"] == 0.0 and not result["flips"].any()


def test_torch_compile_of_the_op_matches_eager():
    compiled = torch.compile(eager_swiglu, dynamic=True)
    result = check_implementation(compiled, max_examples=10, dtypes=(torch.float32,))
    assert result["passed"] and result["examples"] == 10


def test_switching_profiles_creates_new_golden_files_instead_of_failing(tiny_project):
    """The quick and standard profiles train different models under the same names: their golden
    files must not be compared with each other (that was an ERROR per model and dtype)."""
    import json

    from swiglu_audit.config import OPT_ENABLE

    args = (OPT_ENABLE, "-p", "no:cacheprovider", "-k", "golden")
    assert tiny_project.runpytest_subprocess(*args).ret == 0
    text = (tiny_project.path / "pyproject.toml").read_text()
    (tiny_project.path / "pyproject.toml").write_text(text.replace("epochs = 4", "epochs = 5"))  # another recipe
    result = tiny_project.runpytest_subprocess(*args)
    findings = json.loads((tiny_project.path / "reports" / "report.json").read_text())["findings"]
    assert result.ret == 0 and findings
    assert all(f["status"] == "WARN" and "created" in f["reason"] for f in findings)
    (tiny_project.path / "pyproject.toml").write_text(text)  # back to the first recipe: compared again
    tiny_project.runpytest_subprocess(*args)
    findings = json.loads((tiny_project.path / "reports" / "report.json").read_text())["findings"]
    assert {f["status"] for f in findings} == {"PASS"}


class _LlamaMLP(torch.nn.Module):
    """A user's SwiGLU FFN under LLaMA's names, not the zoo's FeedForward."""

    def __init__(self, d: int = 3, hidden: int = 6):
        super().__init__()
        self.gate_proj = torch.nn.Linear(d, hidden, bias=False)
        self.up_proj = torch.nn.Linear(d, hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _UserModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = _LlamaMLP()
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.head(x + self.mlp(x))


def _blown_user_model() -> _UserModel:
    model = _UserModel()
    with torch.no_grad():
        model.mlp.gate_proj.weight.fill_(70.0)
        model.mlp.up_proj.weight.fill_(70.0)
        model.mlp.down_proj.weight.fill_(1e-3)  # every Linear output stays far below the hidden product
    return model


def _parity_facts(result: dict, dtype: str = "float16") -> dict:
    from swiglu_audit.methods.numerical import FP16_MAX

    return {"model": "user", "dtype": dtype, "flips": {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0},
            "finite": result["finite"], "headroom": result["headroom"], "ffn_absmax": result["ffn_absmax"],
            "fp16_max": FP16_MAX, "max_logit_deviation": result["max_logit_deviation"]}


def test_fp16_headroom_measures_a_llama_named_ffns_hidden_product():
    """gate_proj/up_proj/down_proj outside the zoo: the hidden gate x up product is what float16
    overflows on. The old fallback read the largest Linear output (214 here: headroom 306, PASS)."""
    from swiglu_audit.checks.numerical import PRECISION_PARITY
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.methods.numerical import FP16_MAX, ffn_hidden_absmax
    from swiglu_audit.verdicts.risk import decided_finding

    model = _blown_user_model()
    x = torch.full((4, 3), 0.9)
    pre = 70.0 * 2.7  # each gate and up value: 70 * (3 x 0.9)
    expected = float(F.silu(torch.tensor(pre, dtype=torch.float64)) * pre)  # about 35721
    assert ffn_hidden_absmax(model, x) == pytest.approx(expected, rel=1e-5)
    result = half_parity(model, x, "float16")
    assert result["ffn_absmax"] == pytest.approx(expected, rel=1e-5)
    assert result["headroom"] == pytest.approx(FP16_MAX / expected, rel=1e-5) and result["headroom"] < 2
    finding = decided_finding(PRECISION_PARITY, ["user"], _parity_facts(result), DEFAULT_POLICY)
    assert finding.status == "FAIL" and "min_fp16_headroom = 2.0" in finding.reason


def test_fp16_headroom_of_a_model_without_an_ffn_is_not_measured_and_not_passed():
    from swiglu_audit.checks.numerical import PRECISION_PARITY
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.verdicts.risk import decided_finding

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    result = half_parity(model, torch.rand(16, 1, 8, 8), "float16")
    assert result["ffn_absmax"] is None and result["headroom"] is None
    finding = decided_finding(PRECISION_PARITY, ["user"], _parity_facts(result), DEFAULT_POLICY)
    assert finding.status == "WARN" and "headroom not measured" in finding.reason
    # bfloat16 does not judge the headroom: its PASS says it was not measured
    bf16 = decided_finding(PRECISION_PARITY, ["user"], _parity_facts(result, "bfloat16"), DEFAULT_POLICY)
    assert bf16.status == "PASS" and "not measured" in bf16.reason


def test_the_zoos_feedforward_headroom_is_still_its_down_projections_input():
    from swiglu_audit.methods.numerical import ffn_hidden_absmax
    from swiglu_audit.training.nn import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu")).eval()
    x = torch.rand(8, 1, 8, 8)
    seen = []
    handles = [f.down_proj.register_forward_pre_hook(lambda m, i: seen.append(float(i[0].abs().max())))
               for f in model.ffns]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    assert ffn_hidden_absmax(model, x) == max(seen) > 0


def _device_facts(low: float, value: float, high: float, deviation: float = 0.0) -> dict:
    return {"model": "m", "device": "cuda", "deviation": deviation,
            "flips": {"value": value, "ci_low": low, "ci_high": high}}


def test_cpu_vs_accelerator_flip_rate_is_judged_on_its_interval():
    """max_device_flip_rate = 0.01: a point value of 0.005 whose interval reaches 0.03 was a PASS."""
    from swiglu_audit.checks.numerical import DEVICE_PARITY
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.verdicts.risk import decided_finding

    def status(facts):
        return decided_finding(DEVICE_PARITY, ["m"], facts, DEFAULT_POLICY, value=facts["deviation"]).status

    assert DEFAULT_POLICY["max_device_flip_rate"] == 0.01
    straddling = decided_finding(DEVICE_PARITY, ["m"], _device_facts(0.0, 0.005, 0.03), DEFAULT_POLICY)
    assert straddling.status == "WARN" and "inconclusive" in straddling.reason
    assert status(_device_facts(0.0, 0.001, 0.008)) == "PASS"
    assert status(_device_facts(0.02, 0.04, 0.06)) == "FAIL"
    assert status(_device_facts(0.0, 0.001, 0.008, deviation=0.5)) == "FAIL"  # the largest deviation is exact


def test_a_nan_in_one_run_is_an_infinite_difference():
    from swiglu_audit.checks.numerical import DETERMINISM
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.verdicts.risk import decided_finding

    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.zeros(2)}
    diverged = {"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(2)}
    assert state_difference(a, diverged) == (float("inf"), "w")  # was (0.0, None): a PASS
    assert state_difference(diverged, a) == (float("inf"), "w")
    assert state_difference(diverged, diverged) == (0.0, None)  # the same NaN in both runs agrees
    from swiglu_audit.methods.numerical import max_difference

    assert max_difference(torch.tensor([float("inf"), 1.0]), torch.tensor([float("inf"), 1.5])) == 0.5
    logits = torch.tensor([[0.5, float("nan")]])
    assert max_difference(logits, torch.tensor([[0.5, 0.1]])) == float("inf")
    facts = {"model": "m", "seed": 0, "device": "cpu", "trained": True, "weight_diff": float("inf"),
             "weight_where": "w", "output_diff": max_difference(logits, torch.tensor([[0.5, 0.1]])), "worst": float("inf")}
    assert decided_finding(DETERMINISM, ["m"], facts, DEFAULT_POLICY).status == "FAIL"


def test_a_pretrained_models_determinism_claims_its_forward_pass_only():
    """A model loaded from weights is not trained twice: no weight difference is measured (none
    is reported as 0), and the sentence says that only its outputs were compared."""
    from swiglu_audit.checks.numerical import DETERMINISM
    from swiglu_audit.config import DEFAULT_POLICY
    from swiglu_audit.verdicts.risk import decided_finding

    for output_diff, status in ((0.0, "PASS"), (0.25, "FAIL")):
        facts = {"model": "m", "seed": 0, "device": "cpu", "trained": False, "weight_diff": None,
                 "weight_where": None, "output_diff": output_diff, "worst": output_diff}
        finding = decided_finding(DETERMINISM, ["m"], facts, DEFAULT_POLICY)
        assert finding.status == status
        assert "two forward passes of 'm'" in finding.reason and "only its outputs were compared" in finding.reason
        assert "weights and outputs" not in finding.reason
