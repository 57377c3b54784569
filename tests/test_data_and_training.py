import pytest
import torch

from swiglu_audit.errors import DataContractError
from swiglu_audit.training.data import load_digits_data, load_user_data, split_hash
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, accuracy, train_model


def test_digits_splits_are_fixed_stratified_and_hashed():
    a, b = load_digits_data(), load_digits_data()
    assert a.summary()["sizes"] == {"train": 1078, "val": 359, "test": 360}
    assert a.hashes == b.hashes and len(set(a.hashes.values())) == 3
    assert float(a.x_train.min()) >= 0 and float(a.x_train.max()) <= 1
    # stratified: every class holds about a tenth of the test split
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38


def test_split_hash_changes_with_one_label():
    x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 3])
    y2 = y.clone()
    y2[0] = 1
    assert split_hash(x, y) != split_hash(x, y2)


def _module_with_factory(pytester_path, body):
    import importlib
    import sys
    import uuid

    name = f"userdata_{uuid.uuid4().hex[:8]}"
    (pytester_path / f"{name}.py").write_text(body)
    sys.path.insert(0, str(pytester_path))
    importlib.invalidate_caches()
    return f"{name}:make"


GOOD = """
import numpy as np
def make():
    rng = np.random.default_rng(0)
    return {"x_train": rng.random((40, 1, 4, 4)), "y_train": np.arange(40) % 4,
            "x_test": rng.random((12, 1, 4, 4)), "y_test": np.arange(12) % 4, "name": "toy"}
"""


def test_user_dataset_contract_good(tmp_path):
    data = load_user_data(_module_with_factory(tmp_path, GOOD))
    assert data.name == "toy" and data.n_classes == 4 and data.input_shape == (1, 4, 4)
    assert len(data.y_train) + len(data.y_val) == 40  # validation carved out of train


@pytest.mark.parametrize("body, words", [
    (GOOD.replace('"y_train": np.arange(40) % 4', '"y_train": np.arange(39) % 4'), ["x_train has 40", "y_train has 39"]),
    (GOOD.replace("rng.random((12, 1, 4, 4))", "rng.random((12, 1, 4, 4)) * 255"), ["x_test", "[0, 1]"]),
    (GOOD.replace("rng.random((12, 1, 4, 4))", "rng.random((12, 4, 4))"), ["x_test", "shape"]),
    ("def make():\n    raise RuntimeError('disk on fire')\n", ["raised RuntimeError", "disk on fire"]),
    ("def make():\n    return [1, 2]\n", ["mapping"]),
])
def test_user_dataset_contract_errors_name_the_problem(tmp_path, body, words):
    with pytest.raises(DataContractError) as info:
        load_user_data(_module_with_factory(tmp_path, body))
    for word in words:
        assert word in str(info.value)


def test_training_is_seeded_and_reproducible():
    data = load_digits_data()
    recipe = Recipe(epochs=2)

    def trained(seed):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
        train_model(model, data.x_train, data.y_train, recipe, seed, torch.device("cpu"))
        return model.state_dict()

    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_learns_digits():
    data = load_digits_data()
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
    record = train_model(model, data.x_train, data.y_train, Recipe(epochs=5), 0, torch.device("cpu"),
                         data.x_val, data.y_val)
    assert accuracy(model, data.x_test, data.y_test, torch.device("cpu")) > 0.9
    assert record["history"][-1]["train_loss"] < record["history"][0]["train_loss"]
    assert not model.training  # handed back in eval mode


def test_early_stopping_stops_only_when_validation_accuracy_and_training_loss_both_stall():
    data = load_digits_data()
    cpu = torch.device("cpu")

    def trained(recipe, y_val, y_train=data.y_train):
        torch.manual_seed(0)
        model = build_model(ModelConfig(family="mlp", ffn="swiglu"))
        record = train_model(model, data.x_train, y_train, recipe, 0, cpu, data.x_val, y_val)
        return model.state_dict(), record

    # Validation labels the model cannot learn: validation accuracy stalls at chance at once. The
    # training set is still being fitted (its loss keeps falling), as a poisoned set is while its
    # backdoor is learned, so training must not stop on validation accuracy alone.
    noise = torch.randint(0, 10, data.y_val.shape, generator=torch.Generator().manual_seed(1))
    _, fitting = trained(Recipe(epochs=8, patience=2), noise)
    losses = [h["train_loss"] for h in fitting["history"]]
    assert fitting["stopped_epoch"] is None and len(losses) == 8
    assert losses[0] - losses[-1] > 0.1

    # Nothing left to learn (learning rate 0): both stall, and training stops `patience` epochs
    # after its last improvement instead of running all 12.
    _, stalled = trained(Recipe(epochs=12, learning_rate=0.0, patience=2), noise)
    assert stalled["stopped_epoch"] == len(stalled["history"]) == 3
    assert stalled["steps"] == stalled["stopped_epoch"] * -(-len(data.x_train) // 64)

    # On real labels over 3 epochs both keep improving: the same weights as without early stopping.
    plain_state, _ = trained(Recipe(epochs=3), data.y_val)
    patient_state, patient = trained(Recipe(epochs=3, patience=2), data.y_val)
    assert patient["stopped_epoch"] is None
    assert all(torch.equal(plain_state[k], patient_state[k]) for k in plain_state)
    # off, the recipe's cache key is what it was before early stopping existed; on, it names the rule
    assert "patience" not in Recipe().to_dict() and "stop_rule" not in Recipe().to_dict()
    assert Recipe(patience=2).to_dict()["patience"] == 2 and "training loss" in Recipe(patience=2).to_dict()["stop_rule"]


def test_progress_is_quiet_in_ci_and_without_a_terminal(monkeypatch):
    import io

    from swiglu_audit.training.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("CI", "true")
    quiet = Progress(stream=Tty())
    quiet.update("training")
    assert not quiet.enabled and quiet.stream.getvalue() == ""
    monkeypatch.delenv("CI")
    assert not Progress(stream=io.StringIO()).enabled  # not a terminal: an xdist worker, a log file
    loud = Progress(stream=Tty())
    loud.update("training swiglu-mlp seed 0")
    assert loud.enabled and "training swiglu-mlp seed 0" in loud.stream.getvalue()


def test_device_choice_and_a_clear_error_for_a_missing_accelerator():
    from swiglu_audit.config import OPT_DEVICE
    from swiglu_audit.errors import ConfigError
    from swiglu_audit.training.device import precision_name, resolve_device

    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert resolve_device("cpu").type == "cpu" and precision_name(torch.device("cpu")) == "float32"
    assert precision_name(torch.device("cuda")) == "bf16-autocast"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=OPT_DEVICE):
            resolve_device("cuda")


def test_batches_follow_the_free_memory_and_results_do_not_depend_on_them(monkeypatch):
    from swiglu_audit.errors import ConfigError
    from swiglu_audit.methods.attack_registry import AttackParams
    from swiglu_audit.methods.attacks import run_attack
    from swiglu_audit.training import batching
    from swiglu_audit.training.features import penultimate_features
    from swiglu_audit.training.train import predict_logits

    cpu = torch.device("cpu")
    data = load_digits_data()
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="mlp", ffn="swiglu")).eval()
    x, y = data.x_test[:96], data.y_test[:96]
    per_example = batching.example_bytes(model, x, cpu)
    assert per_example > x[0].nbytes  # the activations, not only the input
    # Plenty of memory: the former constants; a small cap: the batch shrinks to what fits.
    assert batching.batch_size(model, x, cpu) == batching.EVAL_CEILING
    assert batching.batch_size(model, x, cpu, gradients=True) == batching.ATTACK_CEILING
    big_logits, big_features = predict_logits(model, x, cpu), penultimate_features(model, x, cpu)
    big_attack = run_attack(model, "pgd", x, y, AttackParams(eps=0.1, steps=3), 10, seed=0)
    monkeypatch.setenv(batching.MEMORY_ENV, str(per_example * 40))
    assert batching.batch_size(model, x, cpu) == 10  # a quarter of 40 examples' worth
    assert batching.batch_size(model, x, cpu, gradients=True) == 5
    assert torch.allclose(predict_logits(model, x, cpu), big_logits, atol=1e-5)
    assert torch.allclose(penultimate_features(model, x, cpu), big_features, atol=1e-5)
    small_attack = run_attack(model, "pgd", x, y, AttackParams(eps=0.1, steps=3), 10, seed=0)
    assert abs(small_attack["robust"].mean() - big_attack["robust"].mean()) <= 0.03
    for bad in ("lots", "-1GiB", "2XB"):
        monkeypatch.setenv(batching.MEMORY_ENV, bad)
        with pytest.raises(ConfigError, match=batching.MEMORY_ENV):
            batching.memory_cap()


def test_copies_of_one_input_narrow_the_example_part_by_their_grouping_not_their_count():
    """Counting a group of c copies as c inputs understates a mean's variance by sum(c^2) / n:
    each input twice gives sqrt(2); one input 51 times among 100 gives sqrt(26.5), though only
    half the inputs are distinct in both; chained near copies (A~B, B~C) are one input."""
    from swiglu_audit.methods.integrity import copies_inflation

    assert copies_inflation([(i, i + 50) for i in range(50)], 100) == (50, pytest.approx(2 ** 0.5))
    distinct, factor = copies_inflation([(0, j) for j in range(1, 51)], 100)
    assert distinct == 50 and factor == pytest.approx(26.5 ** 0.5)
    assert copies_inflation([(0, 1), (1, 2)], 5) == (3, pytest.approx((11 / 5) ** 0.5))
    assert copies_inflation([], 7) == (7, 1.0)

