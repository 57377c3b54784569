"""Build the wheel, install it into a fresh virtual environment and audit from an empty folder.

The fresh environment gets the wheel itself (no editable install, no repo on the path); its
dependencies (torch and the rest, about 1 GB) are borrowed from this environment through a .pth
file rather than installed again, which would take minutes and gigabytes.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_installed_wheel_runs_the_audit_in_an_empty_folder(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO)])
    wheel = next(dist.glob("swiglu_audit-*.whl"))
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True,
                           text=True).stdout
    for shipped in ("swiglu_audit/suites/suite_adversarial.py", "swiglu_audit/suites/suite_deployment.py",
                    "swiglu_audit/suites/suite_fairness.py", "swiglu_audit/zoo_specs/zoo.toml",
                    "swiglu_audit/rmf.toml", "swiglu_audit/schema/report.schema.json", "swiglu_audit/settings.toml",
                    "swiglu_audit/training/digits_split.json"):
        assert shipped in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    project = tmp_path / "users-project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(SWIGLU_AUDIT_CACHE=str(tmp_path / "cache"), PYTHONPATH="")
    where = run([str(py), "-c", "import swiglu_audit; print(swiglu_audit.__file__)"], cwd=project, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel, not the repo

    # every shipped suite is collected (imported) from the wheel; the checks run are the ones that
    # need trained models but no attack, so that the test costs seconds, not the whole quick audit
    audit = subprocess.run([str(py), "-m", "pytest", "--swiglu-audit", "--swiglu-audit-profile=quick",
                            "-p", "no:cacheprovider", "-q", "-k", "gradcheck or roundtrip or ffn_activation_outliers"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=600)
    report = project / "reports" / "report.json"
    assert report.exists(), audit.stdout + audit.stderr
    doc = json.loads(report.read_text())
    # no collection error (a suite that does not import from the wheel would be one)
    assert "deselected" in audit.stdout and not re.search(r"\d+ errors?\b", audit.stdout), audit.stdout
    assert doc["config"]["profile"] == "quick" and len(doc["findings"]) >= 7  # gradcheck, 3 round-trips, 3 outliers
    assert not [f for f in doc["findings"] if f["status"] == "ERROR"], audit.stdout
    assert audit.returncode == (1 if doc["summary"]["breaches_policy"] else 0), audit.stdout
    assert (project / "reports" / "report.html").exists()
