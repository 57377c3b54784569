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


def _configure(folder: Path, candidate="make_swiglu", baseline="make_relu", weights=None, mistake=None):
    """A user project in `folder`: its models, its dataset (with `mistake`), its pyproject."""
    (folder / "usermodels.py").write_text(MODELS)
    lines = ['[tool.swiglu_audit]', 'profile = "quick"', 'include_builtin_zoo = false']
    if mistake is not None:
        (folder / "userdata.py").write_text(DATA.format(mistake=mistake))
        lines.append('dataset = "userdata:load"')
    lines += ['[[tool.swiglu_audit.models]]', 'name = "my-swiglu"', f'factory = "usermodels:{candidate}"',
              'role = "candidate"'] + ([f'weights = "{weights}"'] if weights else [])
    lines += ['[[tool.swiglu_audit.models]]', 'name = "my-baseline"', f'factory = "usermodels:{baseline}"']
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


@pytest.mark.parametrize("factory, words", [
    ("WrongShape", ["my-baseline", "returns shape (8, 3)", "expected (8, 10)"]),
    ("Nan", ["my-baseline", "NaN", "at initialisation"]),
    ("make_broken", ["my-baseline", "factory exploded", "fix the factory"]),
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
