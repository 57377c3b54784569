"""Fail fast on a broken setup: every static problem of the user's data, models and weights is one
`ERROR:` line and exit 4 before anything trains, through the user contract (a pyproject of its
own), with no traceback unless asked for."""

import pytest
from test_plugin import USER_MODELS

from swiglu_audit.config import OPT_DEBUG, OPT_ENABLE

MODELS = USER_MODELS  # the plugin tests' user models: good ones, a wrong shape, NaN, a raising factory

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
            "n_classes": n}}
'''


def _configure(pytester, candidate="make_swiglu", baseline="make_relu", weights=None, mistake=None):
    pytester.makepyfile(usermodels=MODELS)
    lines = ['[tool.swiglu_audit]', 'profile = "quick"', 'include_builtin_zoo = false']
    if mistake is not None:
        pytester.makepyfile(userdata=DATA.format(mistake=mistake))
        lines.append('dataset = "userdata:load"')
    lines += ['[[tool.swiglu_audit.models]]', 'name = "my-swiglu"', f'factory = "usermodels:{candidate}"',
              'role = "candidate"'] + ([f'weights = "{weights}"'] if weights else [])
    lines += ['[[tool.swiglu_audit.models]]', 'name = "my-baseline"', f'factory = "usermodels:{baseline}"']
    pytester.makefile(".toml", pyproject="\n".join(lines) + "\n")


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


@pytest.mark.parametrize("mistake, words", [
    ("x = x * 16", ["x_train, x_test have values in [0, 16]", "scale them"]),
    ("x[3, 0, 0, 0] = np.nan", ["x_train contains NaN", "1 sample"]),
    ("y = y[:-1]", ["x_test has 397 samples but y_test has 396"]),
    ("y[7] = 10", ["y_train has labels in [0, 10]", "outside [0, 10)"]),
])
def test_a_broken_dataset_is_one_usage_error(pytester, monkeypatch, tmp_path, mistake, words):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _configure(pytester, mistake=mistake)
    _run_expecting_one_usage_error(pytester, "userdata:load", *words)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.parametrize("factory, words", [
    ("WrongShape", ["my-baseline", "returns shape (8, 3)", "expected (8, 10)"]),
    ("Nan", ["my-baseline", "NaN", "at initialisation"]),
    ("make_broken", ["my-baseline", "factory exploded", "fix the factory"]),
])
def test_a_broken_model_is_one_usage_error(pytester, monkeypatch, tmp_path, factory, words):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _configure(pytester, baseline=factory)
    _run_expecting_one_usage_error(pytester, *words)


def _save_weights(pytester, state):
    from safetensors.torch import save_file

    save_file(state, str(pytester.path / "w.safetensors"))


def test_a_weights_file_with_the_wrong_keys_is_one_usage_error(pytester, monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _save_weights(pytester, {"other.weight": torch.zeros(3, 3)})
    _configure(pytester, weights="w.safetensors")
    _run_expecting_one_usage_error(pytester, "my-swiglu", "w.safetensors", "lacks", "other.weight")


def test_a_corrupt_weights_file_is_one_usage_error_even_under_xdist(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    (pytester.path / "w.safetensors").write_bytes(b"\x00" * 4 + b"not a safetensors file")
    _configure(pytester, weights="w.safetensors")
    _run_expecting_one_usage_error(pytester, "my-swiglu", "not a readable safetensors file", args=("-n", "2"))


def test_every_problem_is_listed_at_once_and_debug_shows_the_traceback(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    _configure(pytester, baseline="make_broken")
    (pytester.path / "w.safetensors").write_bytes(b"garbage")
    text = (pytester.path / "pyproject.toml").read_text().replace(
        'role = "candidate"', 'role = "candidate"\nweights = "w.safetensors"')
    (pytester.path / "pyproject.toml").write_text(text)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len(errors) == 1 and "not a readable safetensors file" in errors[0]
    # once the weights are fixed, the next problem shows; with the debug flag, its traceback too
    (pytester.path / "w.safetensors").unlink()
    (pytester.path / "pyproject.toml").write_text(text.replace('weights = "w.safetensors"\n', ""))
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", OPT_DEBUG)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "factory exploded" in result.stderr.str() and "Traceback" in result.stderr.str()


def test_unknown_attack_and_corruption_names_are_one_usage_error_each(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    pytester.makefile(".toml", pyproject="""
[tool.swiglu_audit]
profile = "quick"
[tool.swiglu_audit.adversarial]
attacks = ["pgd", "deepfool"]
[tool.swiglu_audit.ood]
corruptions = ["blur", "fog"]
""")
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR and len(errors) == 2
    assert "'deepfool'" in errors[0] and "apgd_t" in errors[0] and "'fog'" in errors[1] and "pixelation" in errors[1]
