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
