"""Shared helpers for the harness's own tests."""

import os
import textwrap

import pytest

# Imported before any test: pytester's fixture restores sys.modules after each test, and a
# torch._dynamo first imported inside one (torch.optim imports it) would be imported again by the
# next, which torch refuses (its operator libraries register once per process).
import torch
import torch._dynamo  # noqa: F401

# Under pytest-xdist (the README's `pytest -n 2`) each worker, and every audit a test starts in a
# subprocess (they inherit the environment), computes on one thread. Two workers each asking
# OpenMP for both cores made the suite 1.6x slower than a serial run: OpenMP's threads spin while
# they wait for a core the other worker holds.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The audits these tests start in subprocesses (about a hundred processes with the xdist workers)
# compile, and pytest assertion-rewrites, the same plugin modules (hypothesis, xdist, ...). Where
# the environment sets PYTHONDONTWRITEBYTECODE, as this project's CI machines do, every process did
# that again, about 0.6 s each; without it the first child writes the bytecode and the rest read it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Whether a model's seeds train stacked is timed by default (training/stack_choice.py), and stacked
# and lone trainings agree up to rounding only: audits that the tests compare finding for finding
# (Ray against local, warm against cold, shards) would otherwise be timed tests. The tests stack
# wherever a model can; tests/test_stacked.py drops this to test the timed choice itself.
os.environ["SWIGLU_AUDIT_STACK"] = "1"

# A tiny audit: two architectures, two seeds, a few epochs. Seconds on two CPU cores.
TINY_AUDIT_TOML = """
[tool.swiglu_audit]
profile = "quick"
variants = ["swiglu", "relu"]
families = ["mlp"]
seeds = [0, 1]

[tool.swiglu_audit.training]
epochs = 4

[tool.swiglu_audit.adversarial]
n_examples = 60
steps = 3
budgets = [0.1, 0.2]
attacks = ["fgsm", "pgd", "square"]
square_queries = 50

[tool.swiglu_audit.poisoning]
clean_label = true            # the full profile's clean-label backdoor, so that its path is tested
threat_triggers = ["corner_patch", "checkerboard"]  # a two-kind power panel (the default has six)

[tool.swiglu_audit.ood]
n_examples = 60
bootstrap = 100

[tool.swiglu_audit.numerical]
n_examples = 60
op_examples = 10
"""


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One checkpoint cache for the plugin tests that do not test the cache itself."""
    return tmp_path_factory.mktemp("checkpoint-cache")


@pytest.fixture
def tiny_project(pytester, shared_cache, monkeypatch):
    """A pytester folder with the tiny audit configured and the shared cache."""
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(shared_cache))
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".toml", pyproject=TINY_AUDIT_TOML)
    return pytester


@pytest.fixture
def write_pyproject():
    """Write the tiny audit's pyproject.toml plus extra TOML into a pytester folder."""
    def write(pytester, extra: str) -> None:
        pytester.makefile(".toml", pyproject=TINY_AUDIT_TOML + textwrap.dedent(extra))
    return write


@pytest.fixture(scope="session")
def tiny_audit(tmp_path_factory, shared_cache, worker_id):
    """The folder of one real tiny audit (subprocess, with --junitxml=junit.xml), shared by the
    tests that read its reports, and under xdist by every worker of the run: one audit, not one
    per worker (two at once on two cores made each several times slower)."""
    import os
    import subprocess
    import sys

    from filelock import FileLock

    def run(folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pyproject.toml").write_text(TINY_AUDIT_TOML)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env["SWIGLU_AUDIT_CACHE"] = str(shared_cache)
        # stacked, untimed: a timed choice near its margin can tip on a busy machine, and the tests
        # that compare other runs with this one (the Ray executor's) need to know how it trained
        env["SWIGLU_AUDIT_STACK"] = "1"
        subprocess.run([sys.executable, "-m", "pytest", "--swiglu-audit", "-p", "no:cacheprovider", "-q",
                        "--junitxml=junit.xml"], cwd=folder, env=env, capture_output=True, timeout=600)
        return folder

    if worker_id == "master":  # not under xdist: this run's own temporary folder
        return run(tmp_path_factory.mktemp("tiny-audit"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above every worker's own
    with FileLock(str(shared / "tiny-audit.lock")):
        folder = shared / "tiny-audit"
        if not (folder / "reports" / "report.json").exists():
            run(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_audit_report(tiny_audit):
    """report.json of the tiny audit."""
    import json

    return json.loads((tiny_audit / "reports" / "report.json").read_text())


def audit_users_data(pytester, module: str, source: str, factory: str, select: str, *, panel=None,
                     seeds=(0, 1), backdoor_target: int = 0):
    """An audit through the user contract of a dataset factory of the user's own (`source`,
    written as `module.py`): quick profile, the SwiGLU and ReLU MLPs, only the checks `select`
    names. Returns pytest's result and the JSON report."""
    import json

    from swiglu_audit.config import OPT_ENABLE

    pytester.makepyfile(**{module: source})
    panel_line = f"threat_triggers = {list(panel)}\n".replace("'", '"') if panel else ""
    pytester.makefile(".toml", pyproject=f"""
[tool.swiglu_audit]
profile = "quick"
dataset = "{module}:{factory}"
variants = ["swiglu", "relu"]
families = ["mlp"]
seeds = {list(seeds)}
[tool.swiglu_audit.poisoning]
backdoor_target = {backdoor_target}
""" + panel_line)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", select)
    return result, json.loads((pytester.path / "reports" / "report.json").read_text())
