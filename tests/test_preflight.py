"""Fail fast on a broken setup: every static problem of the user's data, models and weights is one
`ERROR:` line and exit 4 before anything trains, through the user contract (a pyproject of its
own), with no traceback unless asked for.

Two runs go through pytest in a subprocess, as a user's would (serial, and under xdist): exit
status 4, one `ERROR:` line each, no traceback, nothing trained. The wording of each problem is
checked in-process, through the same check the plugin calls (`check_setup` on the project's own
pyproject), which is what a subprocess run would print line by line."""

import sys
from pathlib import Path

import pytest
from test_plugin import USER_MODELS

from swiglu_audit.config import OPT_DEBUG, OPT_ENABLE, build_config, read_pyproject_table
from swiglu_audit.pytest.preflight import SetupError, check_setup

# the plugin tests' user models (good ones, a wrong shape, NaN, a raising factory) and models that
# pass a forward pass yet cannot be trained, or need another device
MODELS = USER_MODELS + '''

class IntLogits(WrongShape):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)
    def forward(self, x):
        return self.lin(x.flatten(1)).round().long()

class Detached(IntLogits):
    def forward(self, x):
        return self.lin(x.flatten(1)).detach()

class NoParameters(nn.Module):
    def __init__(self):
        super().__init__()
    def forward(self, x):
        return x.flatten(1)[:, :10] * 2 - 1

class NormalisesInPlace(IntLogits):
    """Writes to its input when evaluated (a normalisation done with x.sub_()/x.div_())."""
    def forward(self, x):
        if not torch.is_grad_enabled() or not x.requires_grad:
            x.sub_(0.5).div_(0.5)
        return self.lin(x.flatten(1))

class NeedsCuda(IntLogits):
    def forward(self, x):
        if not x.is_cuda:
            raise RuntimeError("Expected all tensors to be on the same device")
        return self.lin(x.flatten(1))
'''

# digits in [0, 1] with one mistake planted by `MISTAKE` (a line of Python run on x, y, n)
DATA = '''
import numpy as np
from sklearn.datasets import load_digits

def load():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    n = 10
    {mistake}
    return {{"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:],
            **({{}} if n is None else {{"n_classes": n}})}}
'''


def _configure(folder: Path, candidate="make_swiglu", baseline="make_relu", weights=None, mistake=None,
               settings=('include_builtin_zoo = false',), baseline_name="my-baseline", tables=()):
    """A user project in `folder`: its models, its dataset (with `mistake`), its pyproject (with
    `settings` in [tool.swiglu_audit] and the TOML lines `tables` after the models)."""
    (folder / "usermodels.py").write_text(MODELS)
    lines = ['[tool.swiglu_audit]', 'profile = "quick"', *settings]
    if mistake is not None:
        (folder / "userdata.py").write_text(DATA.format(mistake=mistake))
        lines.append('dataset = "userdata:load"')
    lines += ['[[tool.swiglu_audit.models]]', 'name = "my-swiglu"', f'factory = "usermodels:{candidate}"',
              'role = "candidate"'] + ([f'weights = "{weights}"'] if weights else [])
    lines += ['[[tool.swiglu_audit.models]]', f'name = "{baseline_name}"', f'factory = "usermodels:{baseline}"']
    lines += tables
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")


def _run_expecting_one_usage_error(pytester, *words, args=()):
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", *args)
    out = result.stdout.lines + result.stderr.lines
    errors = [line for line in out if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(out[-30:])
    assert len(errors) == 1, errors
    for word in words:
        assert word in errors[0]
    assert not any("Traceback" in line for line in out)
    assert len([line for line in out if line.strip()]) < 40
    assert not (pytester.path / "reports" / "report.json").exists()  # nothing ran
    return errors[0]


def _problems(project: Path, monkeypatch, show_tracebacks=False) -> list[str]:
    """What the plugin's start-up check says of this project, in-process: its `ERROR:` lines.
    (A plain folder, not pytester's: pytester drops the modules a test imported when it ends,
    and torch's extension modules do not survive being imported twice in one process.)"""
    monkeypatch.syspath_prepend(str(project))
    for name in ("userdata", "usermodels"):  # each test writes its own modules under these names
        monkeypatch.delitem(sys.modules, name, raising=False)
    config = build_config(read_pyproject_table(project), project_root=project, cache_dir=str(project / "cache"))
    with pytest.raises(SetupError) as raised:
        check_setup(config, show_tracebacks=show_tracebacks)
    return [str(problem) for problem in raised.value.args]


def test_a_broken_dataset_is_one_usage_error_and_trains_nothing(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _configure(pytester.path, mistake="x = x * 16")
    _run_expecting_one_usage_error(pytester, "userdata:load", "x_train, x_test have values in [0, 16]", "scale them")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.parametrize("mistake, words", [
    ("x = x * 16", ["x_train, x_test have values in [0, 16]", "scale them"]),
    ("x[3, 0, 0, 0] = np.nan", ["x_train contains NaN", "1 sample"]),
    ("y = y[:-1]", ["x_test has 397 samples but y_test has 396"]),
    ("y[7] = 10", ["y_train has labels in [0, 10]", "outside [0, 10)"]),
])
def test_each_dataset_mistake_is_named_with_its_fix(monkeypatch, tmp_path, mistake, words):
    _configure(tmp_path, mistake=mistake)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1 and "userdata:load" in problems[0]
    for word in words:
        assert word in problems[0]


def test_channels_last_images_are_named_split_by_split(monkeypatch, tmp_path):
    """(N, H, W, C) where (N, C, H, W) is read: rows of pixels would be channels, and every image
    method (triggers, corruptions, shifted copies, mirrors) would act on the wrong axes."""
    _configure(tmp_path, mistake="x = np.repeat(x.transpose(0, 2, 3, 1), 3, axis=3)")
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 2
    for problem, split, n in zip(problems, ("x_train", "x_test"), (1400, 397)):
        assert f"{split} has shape ({n}, 8, 8, 3), which looks channels-last" in problem
        assert "x.transpose(0, 3, 1, 2)" in problem


def test_a_damaged_live_file_is_one_problem_not_a_traceback(monkeypatch, tmp_path):
    """A truncated live.npz (a pipeline's interrupted drop) stops the session as a usage error."""
    import numpy as np

    np.savez(tmp_path / "live.npz", x_live=np.zeros((40, 1, 8, 8), dtype=np.float32))
    (tmp_path / "live.npz").write_bytes((tmp_path / "live.npz").read_bytes()[:1000])
    _configure(tmp_path, settings=('include_builtin_zoo = false', 'live = "live.npz"'))
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1, problems
    for words in ("live.npz' cannot be read (BadZipFile", "damaged", "write it again with numpy.savez"):
        assert words in problems[0]


@pytest.mark.parametrize("factory, words", [
    ("WrongShape", ["my-baseline", "returns shape (8, 3)", "expected (8, 10)"]),
    ("Nan", ["my-baseline", "NaN", "at initialisation"]),
    ("make_broken", ["my-baseline", "factory exploded", "fix the factory"]),
    # the other models would read what it wrote, and their cached results would keep it
    ("NormalisesInPlace", ["my-baseline", "changes its input tensor in place", "not x.mul_(0.5)"]),
])
def test_a_broken_model_is_one_problem_naming_the_model(monkeypatch, tmp_path, factory, words):
    _configure(tmp_path, baseline=factory)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1 and "Traceback" not in problems[0]
    for word in words:
        assert word in problems[0]


def _save_weights(folder: Path, state):
    from safetensors.torch import save_file

    save_file(state, str(folder / "w.safetensors"))


def test_a_weights_file_with_the_wrong_keys_is_one_problem(monkeypatch, tmp_path):
    import torch

    _save_weights(tmp_path, {"other.weight": torch.zeros(3, 3)})
    _configure(tmp_path, weights="w.safetensors")
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1
    for word in ("my-swiglu", "w.safetensors", "lacks", "other.weight"):
        assert word in problems[0]


def test_weights_that_hold_nan_are_named_not_blamed_on_training(monkeypatch, tmp_path):
    """Nothing was trained: the message names the weights file, not the learning rate."""

    from swiglu_audit.training.nn import ModelConfig, build_model

    model = build_model(ModelConfig(ffn="swiglu", input_shape=(1, 8, 8), n_classes=10, d_model=32, ffn_hidden=96))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.weight"][0, 0] = float("nan")
    _save_weights(tmp_path, state)
    _configure(tmp_path, weights="w.safetensors")
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1
    assert "returns NaN or infinite logits with the weights loaded from w.safetensors" in problems[0]
    assert "learning rate" not in problems[0]


def test_a_corrupt_weights_file_is_one_usage_error_even_under_xdist(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    (pytester.path / "w.safetensors").write_bytes(b"\x00" * 4 + b"not a safetensors file")
    _configure(pytester.path, weights="w.safetensors")
    _run_expecting_one_usage_error(pytester, "my-swiglu", "not a readable safetensors file", args=("-n", "2"))


def test_the_debug_flag_shows_the_traceback_through_pytest(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _configure(pytester.path, baseline="make_broken")
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", OPT_DEBUG)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "factory exploded" in result.stderr.str() and "Traceback" in result.stderr.str()


def test_the_next_problem_shows_once_the_first_is_fixed_and_debug_shows_its_traceback(monkeypatch, tmp_path):
    _configure(tmp_path, baseline="make_broken")
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    text = (tmp_path / "pyproject.toml").read_text().replace(
        'role = "candidate"', 'role = "candidate"\nweights = "w.safetensors"')
    (tmp_path / "pyproject.toml").write_text(text)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1 and "not a readable safetensors file" in problems[0]
    # once the weights are fixed, the next problem shows; with the debug flag, its traceback too
    (tmp_path / "w.safetensors").unlink()
    (tmp_path / "pyproject.toml").write_text(text.replace('weights = "w.safetensors"\n', ""))
    problems = _problems(tmp_path, monkeypatch, show_tracebacks=True)
    assert "factory exploded" in problems[0] and "Traceback" in problems[0]


def test_unknown_attack_and_corruption_names_are_one_problem_each(monkeypatch, tmp_path):
    (tmp_path / "pyproject.toml").write_text("""
[tool.swiglu_audit]
profile = "quick"
[tool.swiglu_audit.adversarial]
attacks = ["pgd", "deepfool"]
[tool.swiglu_audit.ood]
corruptions = ["blur", "fog"]
""")
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 2
    assert "'deepfool'" in problems[0] and "apgd_t" in problems[0] and "'fog'" in problems[1] and "pixelation" in problems[1]


# --- model names: no built-in model replaced, no model twice, no name that leads out of a folder

@pytest.mark.parametrize("settings, name, words", [
    # the pair (swiglu-mlp, relu-mlp) would compare the zoo's SwiGLU with this model, and never audit the zoo's ReLU MLP
    (('include_builtin_zoo = true', 'families = ["mlp"]'), "relu-mlp",
     ["'relu-mlp'", "the built-in zoo has a model of that name", "rename yours"]),
    (('include_builtin_zoo = true', 'families = ["mlp", "mlp"]'), "my-baseline",
     ["families lists 'mlp' more than once"]),
    (('include_builtin_zoo = true', 'families = ["mlp"]', 'variants = ["swiglu", "relu", "relu"]'), "my-baseline",
     ["variants lists 'relu' more than once"]),
    (('include_builtin_zoo = false',), "../../weights/gelu",
     ["'../../weights/gelu'", "letters, digits, '-', '_'", "'weights-gelu'"]),
    (('include_builtin_zoo = false',), ".hidden", ["'.hidden'", "not start with '.'"]),
])
def test_a_model_name_taken_twice_or_unsafe_as_a_file_name_is_named(monkeypatch, tmp_path, settings, name, words):
    _configure(tmp_path, settings=settings, baseline_name=name)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]


def test_the_spec_list_refuses_a_name_that_would_replace_a_built_in_model(tmp_path):
    from swiglu_audit.errors import ConfigError
    from swiglu_audit.training.specs import model_specs

    _configure(tmp_path, settings=('include_builtin_zoo = true', 'families = ["mlp"]'), baseline_name="relu-mlp")
    config = build_config(read_pyproject_table(tmp_path), project_root=tmp_path)
    with pytest.raises(ConfigError, match="relu-mlp"):
        model_specs(config)  # what the Zoo and the test ids read: never a dict where one silently replaces the other


@pytest.mark.parametrize("platform, model", [("cpu-float32", "../../weights/gelu"), ("..", "gelu-mlp"),
                                             ("cpu-float32", "sub/gelu")])
def test_a_golden_file_is_never_written_outside_its_folder(tmp_path, platform, model):
    from swiglu_audit.training.golden import golden_path

    assert golden_path(tmp_path, "cpu-float32", "gelu-mlp") == tmp_path / "cpu-float32" / "gelu-mlp.safetensors"
    with pytest.raises(ValueError, match="outside"):
        golden_path(tmp_path / "golden", platform, model)


# --- data: classes 0..C-1 each with training samples, inputs with features, splits large enough

TINY_SPLITS = ('return {"x_train": x[:2], "y_train": np.array([0, 1]), "x_val": x[2:3], "y_val": np.array([0]), '
               '"x_test": x[3:5], "y_test": np.array([1, 0])}')


@pytest.mark.parametrize("mistake, words", [
    ("y[:] = 0", ["y_train holds one class (0)", "at least 2 classes"]),
    ("y[:] = 0; n = None", ["y_train holds one class (0)", "at least 2 classes"]),
    # 1-based labels: class 0 has no sample, and the default targeted_pair [0, 1] would flip nothing
    ("y = y + 1; n = None", ["n_classes = 11 (the largest label + 1)", "classes 0 have no training sample",
                             "relabel the classes 0..C-1"]),
    # raw ids as labels: a head of ten million classes
    ("y = y + 10**7; n = None", ["n_classes = 10000010", "classes 0, 1, 2, 3, 4 and 9999995 more",
                                 "relabel the classes 0..C-1"]),
    ("y[y == 9] = 3", ["n_classes = 10, but classes 9 have no training sample"]),
    ("x = x[:, :, :, :0]", ["inputs of shape (1, 8, 0) hold no values", "at least one feature"]),
    ('return {"x_train": np.zeros((1400, 0), "float32"), "y_train": y[:1400], "x_test": np.zeros((50, 0), '
     '"float32"), "y_test": y[:50]}', ["inputs of shape (1, 1, 0) hold no values"]),
])
def test_each_class_or_feature_mistake_is_named_with_its_fix(monkeypatch, tmp_path, mistake, words):
    _configure(tmp_path, mistake=mistake)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1 and "userdata:load" in problems[0], problems
    for word in words:
        assert word in problems[0]


def test_splits_too_small_for_the_audit_are_named_with_the_minimum(monkeypatch, tmp_path):
    _configure(tmp_path, mistake=TINY_SPLITS)
    problems = _problems(tmp_path, monkeypatch)
    assert [p.split(": ")[1].split(";")[0] for p in problems] == [
        f"the {s} split has {n} samples" for s, n in (("train", 2), ("val", 1), ("test", 2))]
    assert all("give at least 8" in p for p in problems)


def test_a_validation_split_carved_too_small_is_named(monkeypatch, tmp_path):
    _configure(tmp_path, mistake='return {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:60], "y_test": y[30:60]}')
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1
    for word in ("carved out of the training split", "has 6 samples", "give at least 8", "x_val and y_val"):
        assert word in problems[0]


@pytest.mark.parametrize("table, words", [
    ("targeted_pair = [0, 10]", ["targeted_pair = [0, 10]: class 10 does not exist", "classes 0 to 9"]),
    ("backdoor_target = 12", ["backdoor_target = 12: class 12 does not exist", "classes 0 to 9"]),
])
def test_a_poisoning_class_outside_the_data_is_a_usage_error_at_start_up(monkeypatch, tmp_path, table, words):
    _configure(tmp_path, tables=("[tool.swiglu_audit.poisoning]", table))  # the digits: classes 0 to 9
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1
    for word in words:
        assert word in problems[0]


def test_attacks_that_need_more_classes_than_the_data_has_are_named_with_the_set_that_runs():
    """Binary data and the base profile's attack set: APGD-DLR reads the third-largest logit and
    APGD-T the fourth (torchattacks raises an IndexError on fewer), which was an ERROR of every
    adversarial finding, after training."""
    from swiglu_audit.pytest.preflight import attack_class_problems

    attacks = ["fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "apgd_t", "square"]
    (binary,) = attack_class_problems(attacks, 2)
    assert "'apgd_dlr' needs 3, 'apgd_t' needs 4 classes or more, and the dataset has 2" in binary
    assert "attacks = ['fgsm', 'pgd', 'pgd_l2', 'apgd_ce', 'square']" in binary
    (three,) = attack_class_problems(attacks, 3)
    assert "'apgd_t' needs 4" in three and "apgd_dlr" not in three.split(";")[0].replace("'apgd_t'", "")
    assert attack_class_problems(attacks, 4) == [] and attack_class_problems(["fgsm", "autoattack"], 3)


def test_the_vit_family_on_tabular_data_is_named_with_the_families_that_run():
    """The standard profile lists the zoo's ViT, which cuts images into patches: on (N, D) data
    the plan's first probe met it as an internal error."""
    import types

    from swiglu_audit.config import build_config
    from swiglu_audit.pytest.preflight import family_problems

    config = build_config({}, profile="standard")
    (problem,) = family_problems(config, types.SimpleNamespace(modality="tabular"))
    assert "the 'vit' family needs image data" in problem and "set families = ['mlp']" in problem
    assert family_problems(config, types.SimpleNamespace(modality="image")) == []


# --- models the audit would train: floating-point logits that a backward pass reaches parameters from

@pytest.mark.parametrize("factory, words", [
    ("IntLogits", ["my-baseline", "dtype torch.int64", "floating-point logits"]),
    ("Detached", ["my-baseline", "carry no gradient", "no `weights` file"]),
    ("NoParameters", ["my-baseline", "no trainable parameters", "no `weights` file"]),
])
def test_a_model_that_cannot_be_trained_is_named_before_training(monkeypatch, tmp_path, factory, words):
    _configure(tmp_path, baseline=factory)
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]


def test_a_model_loaded_from_weights_need_not_be_trainable(monkeypatch, tmp_path):
    import torch

    _save_weights(tmp_path, {"lin.weight": torch.zeros(10, 64), "lin.bias": torch.zeros(10)})
    _configure(tmp_path, candidate="Detached", weights="w.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usermodels", raising=False)
    config = build_config(read_pyproject_table(tmp_path), project_root=tmp_path, cache_dir=str(tmp_path / "cache"))
    assert check_setup(config).n_classes == 10  # no training: its logits need no gradient


def test_models_are_probed_on_the_audits_device_and_a_failure_names_it(monkeypatch, tmp_path):
    import torch

    from swiglu_audit.training import device as device_module

    asked = []
    monkeypatch.setattr(device_module, "resolve_device", lambda requested: asked.append(requested) or torch.device("cpu"))
    _configure(tmp_path, baseline="NeedsCuda", settings=('include_builtin_zoo = false', 'device = "cpu"'))
    problems = _problems(tmp_path, monkeypatch)
    assert asked == ["cpu"]
    assert len(problems) == 1
    for word in ("my-baseline", "on device cpu", "same device", "on the audit's device"):
        assert word in problems[0]


# --- the history folder: probed at start-up as the report folder is, not after the whole audit

@pytest.mark.parametrize("setting, words", [
    ("save = true", ["is not writable", "save = true"]),
    ('compare = "last"', ["cannot be read", "compare"]),
])
def test_a_history_folder_that_cannot_be_used_is_named_at_start_up(monkeypatch, tmp_path, setting, words):
    (tmp_path / "blocker").write_text("a file where the folder should be")
    history = "blocker/history" if setting.startswith("save") else "blocker"
    _configure(tmp_path, settings=('include_builtin_zoo = false', f'history_dir = "{history}"', setting))
    problems = _problems(tmp_path, monkeypatch)
    assert len(problems) == 1 and "history folder" in problems[0] and str(tmp_path / "blocker") in problems[0]
    for word in words:
        assert word in problems[0]


def test_the_trainability_check_holds_under_a_callers_no_grad(monkeypatch, tmp_path):
    """A model is often first loaded, and so trained, inside a measurement that runs under
    torch.no_grad(): the contract check before its training must still reach its parameters."""
    import torch

    from swiglu_audit.training.zoo import check_model_contract

    _configure(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usermodels", raising=False)
    config = build_config(read_pyproject_table(tmp_path), project_root=tmp_path, cache_dir=str(tmp_path / "cache"))
    data = check_setup(config)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, data.n_classes))
    with torch.no_grad():
        check_model_contract(model, "plain", data, torch.device("cpu"))  # raised ModelContractError before
