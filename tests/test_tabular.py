"""A tabular audit through the user contract: scikit-learn's breast-cancer features scaled to
[0, 1] and two small MLPs (SwiGLU and GELU FFN). Only checks that mean something for (N, D) data
are reported; image-only sets and corruptions are "not applicable", never PASS."""

import json

import pytest

from swiglu_audit.config import OPT_ENABLE
from swiglu_audit.methods.corruptions import TABULAR_CORRUPTIONS

DATA = '''
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def load():
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    low, high = x_train.min(0), x_train.max(0)
    scale = lambda v: np.clip((v - low) / (high - low), 0, 1).astype("float32")  # fitted on train only
    return {"x_train": scale(x_train), "y_train": y_train, "x_test": scale(x_test), "y_test": y_test,
            "name": "breast-cancer"}
'''

MODELS = '''
from swiglu_audit.training.nn import ModelConfig, build_model

def make(ffn):
    def factory(input_shape, n_classes):
        return build_model(ModelConfig(ffn=ffn, input_shape=input_shape, n_classes=n_classes, d_model=32, ffn_hidden=96))
    return factory

make_swiglu, make_gelu = make("swiglu"), make("gelu")
'''


@pytest.fixture(scope="module")
def tabular_report(tmp_path_factory):
    import os
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("tabular")
    (folder / "tabdata.py").write_text(DATA)
    (folder / "tabmodels.py").write_text(MODELS)
    (folder / "pyproject.toml").write_text("""
[tool.swiglu_audit]
profile = "quick"
dataset = "tabdata:load"
seeds = [0, 1]
[[tool.swiglu_audit.models]]
name = "tab-swiglu"
factory = "tabmodels:make_swiglu"
role = "candidate"
[[tool.swiglu_audit.models]]
name = "tab-gelu"
factory = "tabmodels:make_gelu"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(SWIGLU_AUDIT_CACHE=str(folder / "cache"), PYTHONPATH=str(folder))
    result = subprocess.run([sys.executable, "-m", "pytest", OPT_ENABLE, "-p", "no:cacheprovider", "-q",
                             "-k", "not golden and not determinism"],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    return json.loads((folder / "reports" / "report.json").read_text()), result


def test_a_tabular_audit_has_no_error_from_image_only_code(tabular_report):
    doc, result = tabular_report
    errors = [f"{f['id']}: {f['reason']}" for f in doc["findings"] if f["status"] == "ERROR"]
    assert not errors, errors
    assert doc["environment"]["data"]["modality"] == "tabular"


def test_no_image_only_set_or_corruption_is_measured_or_passed(tabular_report):
    doc, _ = tabular_report
    ood = [f for f in doc["findings"] if f["check"] == "ood_detection"]
    assert ood and all(set(f["details"]["ood_sets"]) <= {"feature_permuted", "uniform_noise"} for f in ood)
    corruption = [f for f in doc["findings"] if f["check"] == "corruption_robustness"]
    assert corruption
    for f in corruption:
        assert set(f["details"]["corruptions"]) == set(TABULAR_CORRUPTIONS)
        assert {"blur", "rotation", "translation", "pixelation"} <= set(f["details"]["not_applicable"])
    rows = {c["area"]: c for c in doc["coverage"]}
    image_rows = [c for c in rows.values() if c["applicable"] is False]
    assert image_rows and all(not c["measured"] and "not applicable to (N, D) data" in c["note"] for c in image_rows)
    assert rows["Tabular shifts (noise per feature, missing features imputed, scaling drift) at five severities"]["measured"]
    worst = [f for f in doc["findings"] if f["check"] == "worst_case_robust_accuracy"]
    assert worst and all("scaled feature units" in f["reason"] for f in worst)


def test_the_tabular_checks_give_sensible_values(tabular_report):
    doc, _ = tabular_report
    backdoor = {f["models"][0]: f for f in doc["findings"] if f["check"] == "backdoor_attack_success"}
    for name, f in backdoor.items():
        # the feature trigger is learned: at the quick profile's 3% (0.64-0.9 measured), far above
        # the clean model's base rate (0.16)
        asr = max(p["value"] for p in f["details"]["curve"][1:])
        base = f["details"]["curve"][0]["value"]
        assert asr > 0.5 and asr - base > 0.3, (name, f["details"]["curve"])
    near = [f for f in doc["findings"] if f["id"].endswith("[near]") and f["check"] == "ood_detection"]
    far = [f for f in doc["findings"] if f["id"].endswith("[far]") and f["check"] == "ood_detection"]
    assert all(f["value"] > 0.6 for f in near) and all(f["value"] > 0.9 for f in far)
    subpopulation = [f for f in doc["findings"] if f["check"] == "subpopulation_shift"]
    assert len(subpopulation) == 2
    for f in subpopulation:  # held out of training, the range is predicted no better than with it
        assert f["details"]["n_test"] >= 10 and f["details"]["n_train_held_out"] > 0
        assert f["details"]["accuracy_trained_with"] > 0.8 and f["value"] > -0.05
    rows = {c["area"]: c for c in doc["coverage"]}
    assert rows["Subpopulation shift (a feature's top range held out of training)"]["measured"]
    corruption = [f for f in doc["findings"] if f["check"] == "corruption_robustness"]
    for f in corruption:  # accuracy falls as the shift grows
        curve = [p["value"] for p in f["details"]["curve"]]
        assert curve[-1] < curve[0]
