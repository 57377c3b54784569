"""The plugin end to end, through pytester: flags, reports, exit status, xdist, contracts.

Audits run in a subprocess: an in-process run re-imports parts of torch after pytester restores
sys.modules, which is not safe, and a subprocess is what users run anyway.
"""

import json
import shutil
import xml.etree.ElementTree as ET
from importlib import resources

import jsonschema
import pytest
from conftest import TINY_AUDIT_TOML

from swiglu_audit.config import OPT_ENABLE, OPT_REPORT_DIR, OPT_SEEDS, OPT_UPDATE_GOLDEN

# Per model: worst case, 8 sanity checks; 5 poisoning (label flip, targeted flip, backdoor,
# detection, training-set scan); 5 OOD (detection near and far, selective prediction, corruptions,
# calibration); 2 precisions, determinism, 2 golden, round-trip; training efficiency; FFN
# outliers, int8 and fp8 accuracy; class disparity of accuracy, robust accuracy and corrupted
# accuracy (group disparity: no groups are given); membership inference.
PER_MODEL = 1 + 8 + 5 + 5 + 2 + 1 + 2 + 1 + 1 + 3 + 3 + 1
# Per pair: worst case, transfer, clean accuracy; label flip, backdoor, detectability by each of
# the 2 detectors; MSP AUROC near and far, corruption accuracy; 8 efficiency comparisons (FLOPs,
# steps and seconds to target, final accuracy, step time, latency, throughput, training memory);
# int8 and fp8 accuracy change, FFN outliers; worst-class accuracy and robust accuracy;
# membership leakage.
PER_PAIR = 3 + 4 + 3 + 8 + 3 + 2 + 1
# Once: the op's property check and gradcheck; split leakage, train and test duplicates, label
# errors; the training set's verdict from every model's scan.
ONCE = 2 + 4 + 1
N_FINDINGS_TINY = 2 * PER_MODEL + 1 * PER_PAIR + ONCE


def report(pytester, folder="reports"):
    return json.loads((pytester.path / folder / "report.json").read_text())


def test_without_the_flag_only_the_projects_own_tests_run(tiny_project):
    tiny_project.makepyfile(test_own="def test_one():\n    assert 1 + 1 == 2\n")
    result = tiny_project.runpytest()
    result.assert_outcomes(passed=1)
    assert not (tiny_project.path / "reports").exists()


def test_audit_writes_reports_and_exit_status_matches_policy(tiny_project):
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    doc = report(tiny_project)
    jsonschema.validate(doc, json.loads(resources.files("swiglu_audit").joinpath("schema/report.schema.json").read_text()))
    assert len(doc["findings"]) == N_FINDINGS_TINY
    assert result.ret == (1 if doc["summary"]["breaches_policy"] else 0)
    assert {f["suite"] for f in doc["findings"]} == {"adversarial", "poisoning", "ood", "numerical", "efficiency",
                                                     "deployment", "fairness", "privacy"}
    assert all(f["rmf"] for f in doc["findings"])
    env = doc["environment"]
    assert set(env["data"]["sha256"]) == {"train", "val", "test"}
    assert env["models"]["swiglu-mlp"]["n_parameters"] == env["models"]["relu-mlp"]["n_parameters"]
    for name in ("report.html", "findings.csv", "summary.md"):
        assert (tiny_project.path / "reports" / name).stat().st_size > 0
    result.stdout.fnmatch_lines(["*swiglu-audit*", "verdict: *", "*report.json*"])
    # a second run trains nothing: every checkpoint comes from the cache
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    assert report(tiny_project)["environment"]["cache"]["misses"] == 0


def test_xdist_gives_the_same_findings_as_a_serial_run(tiny_project, shared_cache, monkeypatch):
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", OPT_REPORT_DIR + "=serial")
    monkeypatch.setenv("SWIGLU_AUDIT_PROGRESS_INTERVAL", "0.2")  # log lines 5 a second, not one per 30 s
    # the serial run left its completed-audit marker: without it, -n 2 starts its workers
    markers = shared_cache / "completed-audits"
    assert len(list(markers.glob("*.json"))) >= 1
    shutil.rmtree(markers)
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-n", "2", OPT_REPORT_DIR + "=parallel")
    # the controller shows what the workers are doing while they train (their output is hidden)
    board = [line for line in result.stderr.lines if line.startswith("[swiglu-audit]")]
    assert board and any("gw0" in line and "gw1" in line for line in board)
    assert any("training" in line or "prefetch" in line for line in board)
    serial, parallel = report(tiny_project, "serial"), report(tiny_project, "parallel")
    # The serial run created the golden files; the parallel run compared with them.
    golden = lambda doc: [f for f in doc["findings"] if f["check"].startswith("golden_outputs")]
    assert {f["status"] for f in golden(serial)} == {"WARN"}
    assert {f["status"] for f in golden(parallel)} == {"PASS"}
    assert all(f["value"] == 0.0 for f in golden(parallel))  # identical logits under xdist
    # wall-clock timings (indicative) differ run to run: compared by id alone
    key = lambda doc: sorted((f["id"], *(() if f["details"].get("indicative") else
                                         (f["status"], None if f["value"] is None else round(f["value"], 9))))
                             for f in doc["findings"] if not f["check"].startswith("golden_outputs"))
    assert len(serial["findings"]) == N_FINDINGS_TINY
    assert key(serial) == key(parallel)
    assert len(parallel["environment"]["workers"]) == 2
    # warm now (the parallel run completed): -n 2 judges in this one process, and finds the same
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-n", "2", OPT_REPORT_DIR + "=warm")
    result.stderr.fnmatch_lines(["*completed audit of the same settings, code and data*instead of starting 2 workers*"])
    warm = report(tiny_project, "warm")
    assert key(warm) == key(serial) and len(warm["environment"]["workers"]) == 1
    assert warm["environment"]["cache"]["misses"] == 0
    # whole audits, serial, on workers or warm: none of them is a part of the audit (the gates' `partial`)
    assert not any("partial" in doc for doc in (serial, parallel, warm))


def test_policy_breach_fails_the_run_and_shows_in_junit(tiny_project, write_pyproject):
    write_pyproject(tiny_project, """
    [tool.swiglu_audit.policy]
    min_fp16_headroom = 1e12
    """)
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "--junitxml=junit.xml")
    assert result.ret == 1
    doc = report(tiny_project)
    assert doc["summary"]["verdict"] == "FAIL" and doc["summary"]["breaches_policy"]
    fp16 = [f for f in doc["findings"] if f["check"] == "precision_parity"]
    assert len(fp16) == 2 and all(f["status"] == "FAIL" for f in fp16)
    assert "min_fp16_headroom = 1000000000000.0" in fp16[0]["reason"]
    bf16 = [f for f in doc["findings"] if f["check"] == "precision_parity_bf16"]
    # the headroom rule is float16's alone: bfloat16 does not FAIL (with the tiny audit's 120 inputs
    # its flip rate's interval cannot show a rate under 0.02, so it may be inconclusive, not PASS)
    assert bf16 and all(f["status"] != "FAIL" for f in bf16)
    tree = ET.parse(tiny_project.path / "junit.xml")
    props = {(p.get("name"), p.get("value")) for p in tree.iter("property")}
    assert ("swiglu_audit.status", "FAIL") in props and ("swiglu_audit.status", "PASS") in props
    case = [c for c in tree.iter("testcase") if "precision_parity" in c.get("name") and "float16" in c.get("name")][0]
    assert case.find("failure") is not None


@pytest.mark.parametrize("extra, words", [
    ("[tool.swiglu_audit.adversarial]\nepsilon = 0.3\n", ["adversarial", "epsilon", "known keys"]),
    ("[[tool.swiglu_audit.models]]\nname = 'a'\nfactory = 'nosuchmodule:make'\nrole = 'candidate'\n"
     "[[tool.swiglu_audit.models]]\nname = 'b'\nfactory = 'nosuchmodule:make'\n", ["nosuchmodule", "cannot import"]),
])
def test_bad_config_is_a_usage_error_naming_the_key(tiny_project, extra, words):
    """In-process, through what the plugin calls at start-up; the exit status of a usage error
    through pytest is the next test's."""
    from swiglu_audit.config import ConfigError, build_config, read_pyproject_table
    from swiglu_audit.pytest.preflight import check_import_paths

    tiny_project.makefile(".toml", pyproject="[tool.swiglu_audit]\nprofile = 'quick'\n" + extra)
    with pytest.raises(ConfigError) as raised:
        check_import_paths(build_config(read_pyproject_table(tiny_project.path), project_root=tiny_project.path))
    for word in words:
        assert word in str(raised.value)


def test_bad_command_line_seeds_and_unwritable_report_folder(tiny_project):
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, OPT_SEEDS + "=one")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and OPT_SEEDS in result.stderr.str()
    (tiny_project.path / "blocked").write_text("a file, not a folder")
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, OPT_REPORT_DIR + "=blocked/reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "not writable" in result.stderr.str() and OPT_REPORT_DIR in result.stderr.str()


USER_MODELS = '''
import torch
from torch import nn
from swiglu_audit.training.nn import ModelConfig, build_model

def make_swiglu(input_shape, n_classes):
    return build_model(ModelConfig(ffn="swiglu", input_shape=input_shape, n_classes=n_classes, d_model=32, ffn_hidden=96))

def make_relu(n_classes):  # takes only some of the offered keyword arguments
    return build_model(ModelConfig(ffn="relu", n_classes=n_classes, d_model=32, ffn_hidden=96))

class WrongShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 3)
    def forward(self, x):
        return self.lin(x.flatten(1))

class Nan(WrongShape):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)
    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")

def make_broken():
    raise RuntimeError("factory exploded")

class DivergesWhenTrained(nn.Module):
    """Finite logits until it has taken a training step, NaN ever after (a diverged run)."""
    def __init__(self, n_classes):
        super().__init__()
        self.inner = make_relu(n_classes)
        self.register_buffer("steps", torch.zeros(()))
    def forward(self, x):
        if self.training:
            self.steps += 1
        out = self.inner(x)
        return out * float("nan") if self.steps > 0 and not self.training else out

class FailsInTraining(nn.Module):
    """Fine in eval mode (so the start-up probe passes), raises in train mode."""
    def __init__(self, n_classes):
        super().__init__()
        self.inner = make_relu(n_classes)
    def forward(self, x):
        if self.training:
            raise RuntimeError("this layer cannot run in training mode")
        return self.inner(x)
'''


def _two_user_models(pytester, write_pyproject, source, candidate, baseline, weights=None):
    """Write `source` as usermodels.py and configure two of its factories as the audit's models.

    candidate and baseline are (model name, factory name in usermodels) pairs; `weights` is an
    optional safetensors file for the candidate."""
    pytester.makepyfile(usermodels=source)
    weights_line = f'weights = "{weights}"\n' if weights else ""
    write_pyproject(pytester, (
        f'[[tool.swiglu_audit.models]]\nname = "{candidate[0]}"\nfactory = "usermodels:{candidate[1]}"\n'
        f'role = "candidate"\n{weights_line}\n'
        f'[[tool.swiglu_audit.models]]\nname = "{baseline[0]}"\nfactory = "usermodels:{baseline[1]}"\n'))


def _user_zoo(pytester, write_pyproject, baseline_factory):
    _two_user_models(pytester, write_pyproject, USER_MODELS, ("my-swiglu", "make_swiglu"),
                     ("my-baseline", baseline_factory))


def test_users_own_models_are_audited(tiny_project, write_pyproject):
    _user_zoo(tiny_project, write_pyproject, "make_relu")
    tiny_project.syspathinsert()
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    doc = report(tiny_project)
    assert len(doc["findings"]) == N_FINDINGS_TINY
    assert {m for f in doc["findings"] for m in f["models"]} == {"my-swiglu", "my-baseline"}
    assert not [f for f in doc["findings"] if f["status"] == "ERROR"]
    # users' models: the backdoor sets fine-tune the clean checkpoints for a quarter of the epochs,
    # the label-flipping sets (where fine-tuning understates the risk) are retrained
    for model in ("my-swiglu", "my-baseline"):
        runs = doc["environment"]["models"][model]["runs"]
        references = [t for t in runs if t.startswith("privacy-reference")]
        assert len(references) == 2  # the quick profile's membership-inference reference models
        tags = [t for t in runs if t != "clean" and t not in references]
        fine = [t for t in tags if t.endswith("-finetune1of4")]
        assert fine and all(t.startswith(("backdoor", "clean_label")) for t in fine)
        assert {t.split("-")[0] for t in tags if t not in fine} == {"flip", "targeted"}
        planned = next(m for m in doc["plan"]["models"] if m["name"] == model)
        # ... and so do the power panel's planted sets (the checkerboard; the corner patch's 3% set
        # is the detectors' own)
        assert planned["epochs_per_training"] == {"clean": 4, "poisoning": 4, "poisoning fine-tuned": 1,
                                                  "scan power panel": 1, "privacy reference": 4, "determinism": 1}
        panel = [t for t in fine if "-checkerboard" in t]  # the panel's set: the first seed alone
        assert len(panel) == 1 and planned["trainings"]["scan power panel"] == 1
        assert planned["trainings"]["poisoning fine-tuned"] == 2 * (len(fine) - len(panel))


def _audit_with_a_broken_baseline(tiny_project, write_pyproject, factory):
    """A serial audit of my-swiglu against the baseline `factory`, which breaks only once it runs:
    (the run, its report, the ERROR findings, each of which names the baseline)."""
    _user_zoo(tiny_project, write_pyproject, factory)
    tiny_project.syspathinsert()
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider")
    assert result.ret == 1
    doc = report(tiny_project)
    errors = [f for f in doc["findings"] if f["status"] == "ERROR"]
    assert errors and all("my-baseline" in f["models"] for f in errors)
    return result, doc, errors


def test_a_model_that_diverges_in_training_becomes_error_findings_naming_it(tiny_project, write_pyproject):
    # Fine at initialisation (so the start-up checks pass), NaN once trained: only a run can tell.
    result, doc, errors = _audit_with_a_broken_baseline(tiny_project, write_pyproject, "DivergesWhenTrained")
    for word in ("my-baseline", "NaN", "after training"):
        assert word in errors[0]["reason"]
    # the candidate's own checks still ran: an error in one model does not crash the audit
    assert [f for f in doc["findings"] if f["models"] == ["my-swiglu"] and f["status"] != "ERROR"]
    # the terminal groups the flood: one line for the model, not one per check
    grouped = [line for line in result.stdout.lines if "my-baseline could not be evaluated" in line]
    assert len(grouped) == 1 and f"{len(errors)} checks" in grouped[0]


def test_a_model_whose_training_raises_is_error_findings_naming_it_and_the_others_go_on(tiny_project, write_pyproject):
    _, doc, errors = _audit_with_a_broken_baseline(tiny_project, write_pyproject, "FailsInTraining")
    assert all("cannot run in training mode" in f["reason"] for f in errors)
    # every check that asks the zoo for the model gets the error it kept (the determinism check
    # trains copies of its own, and names the cause itself)
    odd = [f["id"] for f in errors if "model 'my-baseline' could not be loaded or trained" not in f["reason"]
           and not f["id"].startswith("numerical.training_determinism")]
    assert not odd, odd[:3]
    # the candidate's own findings, its efficiency ones (a family target without the baseline) included
    candidate_only = [f for f in doc["findings"] if f["models"] == ["my-swiglu"]]
    assert candidate_only and all(f["status"] != "ERROR" for f in candidate_only)
    assert any(f["suite"] == "efficiency" for f in candidate_only)


def test_a_broken_user_model_under_xdist_leaves_the_other_models_audited(tiny_project, write_pyproject, shared_cache):
    _user_zoo(tiny_project, write_pyproject, "DivergesWhenTrained")
    tiny_project.syspathinsert()
    markers = lambda: set((shared_cache / "completed-audits").glob("*.json"))  # noqa: E731
    before = markers()
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-n", "2", "-q")
    assert markers() == before  # an audit with checks in ERROR is not a completed audit a warm run may trust
    assert not [line for line in result.stderr.lines if line.startswith("[swiglu-audit]")]  # -q: no progress
    doc = report(tiny_project)
    errors = [f for f in doc["findings"] if f["status"] == "ERROR"]
    assert errors and all("my-baseline" in f["models"] for f in errors)
    candidate_only = [f for f in doc["findings"] if f["models"] == ["my-swiglu"]]
    assert candidate_only and all(f["status"] != "ERROR" for f in candidate_only)


def _checkpoints(cache) -> list:
    """The trained models' entries (the cache's first level), not measurements or the plan's probes."""
    return sorted(p for p in cache.rglob("*.safetensors") if p.parent.parent == cache)


def test_corrupted_cache_entry_is_healed_during_an_audit(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "private-cache"))
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "roundtrip and not relu")
    entries = _checkpoints(tmp_path / "private-cache")
    assert len(entries) == 2  # two seeds of swiglu-mlp
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "roundtrip and not relu")
    result.stdout.fnmatch_lines(["*corrupted*retrained*"])
    cache = report(tiny_project)["environment"]["cache"]
    assert cache["misses"] == 1 and cache["hits"] == 1 and len(cache["healed"]) == 1


MASKED_MODELS = USER_MODELS + '''
class Quantised(nn.Module):
    """Rounds its input to 1/16 steps: gradients vanish, PGD sees nothing, Square is unaffected."""
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, x):
        return self.inner(torch.round(x * 16) / 16)
    def bpda_forward(self, x):  # the BPDA hook: the same network without the rounding
        return self.inner(x)

class Binarised(Quantised):
    """A non-differentiable gate on the input (thresholding at 0.5), and no BPDA stand-in."""
    def forward(self, x):
        return self.inner((x > 0.5).float())
    bpda_forward = None

class Noisy(Quantised):
    """A randomised defence: fresh noise on every forward pass, also in eval mode (needs EOT)."""
    def forward(self, x):
        return self.inner((x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    bpda_forward = None

def make_masked(input_shape, n_classes):
    return Quantised(make_swiglu(input_shape, n_classes))

def make_binarised(n_classes):
    return Binarised(make_relu(n_classes))

def make_noisy(n_classes):
    return Noisy(make_relu(n_classes))
'''


def test_masked_models_never_pass_and_are_attacked_harder(tiny_project, write_pyproject):
    """Three masked defences through the user contract: input rounding (with a BPDA stand-in), a
    non-differentiable gate, and a randomised forward pass (EOT). None of their robustness
    findings may PASS, and the escalation must break what plain gradient attacks could not."""
    tiny_project.makepyfile(usermodels=MASKED_MODELS)
    write_pyproject(tiny_project, "".join(
        f'[[tool.swiglu_audit.models]]\nname = "{name}"\nfactory = "usermodels:{factory}"\n{role}\n'
        for name, factory, role in (("masked-swiglu", "make_masked", 'role = "candidate"'),
                                    ("binarised-relu", "make_binarised", ""), ("noisy-relu", "make_noisy", ""),
                                    ("plain-relu", "make_relu", ""))))
    # more training and more Square queries than the tiny default, so the numbers mean something
    text = (tiny_project.path / "pyproject.toml").read_text()
    text = text.replace("epochs = 4", "epochs = 10").replace("steps = 3", "steps = 10").replace("square_queries = 50", "square_queries = 300")
    (tiny_project.path / "pyproject.toml").write_text(text)
    tiny_project.syspathinsert()
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "adversarial")
    assert result.ret == 1
    doc = report(tiny_project)
    by_model = lambda name: {f["check"]: f for f in doc["findings"] if f["models"] == [name]}
    for name in ("masked-swiglu", "binarised-relu", "noisy-relu"):
        own = by_model(name)
        assert [c for c, f in own.items() if c.startswith("sanity_") and f["status"] == "FAIL"], name
        worst = own["worst_case_robust_accuracy"]
        assert worst["status"] != "PASS" and "inconclusive" in worst["reason"], (name, worst["reason"])
        assert worst["details"]["masking_failures"] and worst["details"]["escalation"]
    masked = by_model("masked-swiglu")
    worst = masked["worst_case_robust_accuracy"]
    assert "bpda_pgd" in worst["details"]["escalation"]
    pgd_says = worst["details"]["per_attack"]["pgd"]["value"]
    assert pgd_says > 0.9  # what a gradient-only audit would have reported
    assert worst["value"] < pgd_says - 0.3  # BPDA and the other escalations break the rounding
    assert "deterministic_eval" in by_model("noisy-relu")["worst_case_robust_accuracy"]["details"]["masking_failures"]
    assert "eot_pgd" in by_model("noisy-relu")["worst_case_robust_accuracy"]["details"]["escalation"]
    plain = by_model("plain-relu")
    assert plain["sanity_gradients_finite_nonzero"]["status"] == "PASS"
    # a gap judged on its interval carries it in ci_low / ci_high, for the JSON's readers
    gap = plain["sanity_more_iterations_change_little"]
    assert gap["ci_low"] <= gap["value"] <= gap["ci_high"] and gap["ci_level"] == 0.95
    assert f"[{gap['ci_low']:+.3f}, {gap['ci_high']:+.3f}]" in gap["reason"]
    assert not plain["worst_case_robust_accuracy"]["details"]["masking_failures"]
    # every comparison that involves a masked model, transfer included, is WARN at best and says why
    masked_names = {"masked-swiglu", "binarised-relu", "noisy-relu"}
    involved = [f for f in doc["findings"] if f["check"] in ("worst_case_robust_accuracy_vs_baseline",
                                                             "transfer_attack_vs_baseline")
                and masked_names & set(f["models"])]
    assert {f["check"] for f in involved} == {"worst_case_robust_accuracy_vs_baseline", "transfer_attack_vs_baseline"}
    for f in involved:
        assert f["status"] != "PASS" and "gradient-masking checks" in f["reason"], f["id"]


WRONG_IMPL = """
import torch
import torch.nn.functional as F

def swapped(gate, up):
    return F.silu(up) * gate
"""


def test_a_registered_wrong_swiglu_implementation_fails(tiny_project, write_pyproject):
    tiny_project.makepyfile(userimpl=WRONG_IMPL)
    write_pyproject(tiny_project, """
    [tool.swiglu_audit.numerical.implementations]
    fused = "userimpl:swapped"
    """)
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "swiglu_op or gradcheck")
    assert result.ret == 1
    doc = report(tiny_project)
    by_impl = {f["id"].split("[")[1].rstrip("]"): f for f in doc["findings"] if f["check"] == "swiglu_op_property"}
    assert by_impl["eager"]["status"] == "PASS"
    assert by_impl["fused"]["status"] == "FAIL" and "'fused'" in by_impl["fused"]["reason"]
    assert by_impl["fused"]["details"]["minimal_failure"]["gate"] is not None


PRETRAINED = USER_MODELS + '''
def make_plain(input_shape, n_classes):
    return make_swiglu(input_shape, n_classes)
'''


def test_golden_outputs_created_then_a_perturbed_weight_fails_them(tiny_project, write_pyproject):
    import torch
    from safetensors.torch import load_file, save_file

    tiny_project.makepyfile(usermodels=PRETRAINED)
    tiny_project.syspathinsert()
    import importlib

    import usermodels
    importlib.reload(usermodels)
    torch.manual_seed(0)
    save_file(usermodels.make_swiglu((1, 8, 8), 10).state_dict(), str(tiny_project.path / "w.safetensors"))
    _two_user_models(tiny_project, write_pyproject, PRETRAINED, ("pretrained-swiglu", "make_plain"),
                     ("relu", "make_relu"), weights="w.safetensors")
    args = (OPT_ENABLE, "-p", "no:cacheprovider", "-k", "golden")
    tiny_project.runpytest_subprocess(*args)
    first = {f["id"]: f for f in report(tiny_project)["findings"]}
    created = first["numerical.golden_outputs[pretrained-swiglu]"]
    assert created["status"] == "WARN" and "created" in created["reason"]
    assert tiny_project.runpytest_subprocess(*args).ret == 0
    assert {f["status"] for f in report(tiny_project)["findings"]} == {"PASS"}

    state = load_file(str(tiny_project.path / "w.safetensors"))
    state["head.bias"][3] += 0.5  # one perturbed weight
    save_file(state, str(tiny_project.path / "w.safetensors"))
    result = tiny_project.runpytest_subprocess(*args)
    assert result.ret == 1
    failed = {f["id"]: f for f in report(tiny_project)["findings"]}["numerical.golden_outputs[pretrained-swiglu]"]
    assert failed["status"] == "FAIL" and "pretrained-swiglu" in failed["reason"] and "logit 3" in failed["reason"]
    # an explicit flag accepts the change
    tiny_project.runpytest_subprocess(*args, OPT_UPDATE_GOLDEN)
    assert "regenerated" in {f["id"]: f for f in report(tiny_project)["findings"]}["numerical.golden_outputs[pretrained-swiglu]"]["reason"]
    assert tiny_project.runpytest_subprocess(*args).ret == 0


SLOW_MODELS = USER_MODELS + '''
import time

class Slow(nn.Module):
    """Sleeps in every forward pass, so that an interrupt lands in plain Python code."""
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, x):
        time.sleep(0.01)
        return self.inner(x)

def make_slow_swiglu(input_shape, n_classes):
    return Slow(make_swiglu(input_shape, n_classes))

def make_slow_relu(n_classes):
    return Slow(make_relu(n_classes))
'''


def test_an_interrupted_audit_still_writes_its_reports(tiny_project, write_pyproject, tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    _two_user_models(tiny_project, write_pyproject, SLOW_MODELS, ("slow-swiglu", "make_slow_swiglu"),
                     ("slow-relu", "make_slow_relu"))
    cache = tmp_path / "fresh-cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(SWIGLU_AUDIT_CACHE=str(cache), PYTHONPATH=str(tiny_project.path))
    # A shell that starts the test run in the background makes it ignore SIGINT, and Python keeps
    # an inherited "ignore" (no KeyboardInterrupt): give the audit the default disposition back.
    proc = subprocess.Popen([sys.executable, "-m", "pytest", OPT_ENABLE, "-p", "no:cacheprovider", "-q"],
                            cwd=tiny_project.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(_checkpoints(cache)) < 2:
        time.sleep(0.1)  # both seeds of the first model trained: the first checks are running
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()[-3000:]
    doc = report(tiny_project)
    assert doc["summary"]["interrupted"] is True
    assert len(doc["findings"]) < N_FINDINGS_TINY
    assert "interrupted" in (tiny_project.path / "reports" / "report.html").read_text()
    assert not [p for p in os.listdir(tiny_project.path / "reports") if p.endswith(".tmp")]
    assert not list(cache.rglob(".tmp-*"))  # no half-written checkpoint left behind


PLANTED_DATA = '''
from sklearn.datasets import load_digits

PLANTED_LEAK = (10, 5)  # x_train[10] is a copy of x_test[5]
PLANTED_MISLABELS = (20, 40, 60)


def load():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    x_train, y_train, x_test, y_test = x[:1400].copy(), y[:1400].copy(), x[1400:].copy(), y[1400:].copy()
    x_train[PLANTED_LEAK[0]] = x_test[PLANTED_LEAK[1]]
    for i in PLANTED_MISLABELS:
        y_train[i] = (y_train[i] + 5) % 10
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "planted"}
'''


def _audit_with_dataset(project, module: str, source: str, selection: str) -> dict:
    """The tiny audit on a user's dataset factory `module:load`, the checks in `selection` only:
    its findings by check."""
    project.makepyfile(**{module: source})
    pyproject = project.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('profile = "quick"', f'profile = "quick"\ndataset = "{module}:load"'))
    project.syspathinsert()
    project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", selection)
    return {f["check"]: f for f in report(project)["findings"]}


def test_a_users_training_set_is_scanned_and_planted_problems_are_listed_by_their_index(tiny_project):
    findings = _audit_with_dataset(tiny_project, "planted_data", PLANTED_DATA,
                                   "split_leakage or label_errors or training_set_scan")
    leak = findings["split_leakage"]
    assert leak["status"] == "WARN" and leak["details"]["test_indices"] == [5]
    # the train side is reported in the user's own indexing, although a validation split was carved
    assert leak["details"]["pairs_train_vs_split"]["test"] == [[10, 5]]
    from swiglu_audit.training.data import load_user_data

    kept_in_train = set(load_user_data("planted_data:load").train_source_index.tolist())
    planted = {i for i in (20, 40, 60) if i in kept_in_train}
    assert planted and planted <= set(findings["label_errors"]["details"]["indices"])
    assert findings["training_set_scan"]["details"]["index_space"].startswith("positions in the x_train")


BRIGHTENED_LEAK_DATA = '''
import numpy as np
from sklearn.datasets import load_digits


def load():
    """A sixth of the test set: training images after a brightness change and faint noise, as a
    changed pre-processing step or a re-encoding leaves them."""
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    x_train, y_train, x_test, y_test = x[:1400].copy(), y[:1400].copy(), x[1400:].copy(), y[1400:].copy()
    rng = np.random.default_rng(0)
    for j in range(0, len(x_test), 6):
        source = 3 * j
        x_test[j] = np.clip(x_train[source] * 0.9 + 0.08 + rng.normal(0, 0.015, x_train[source].shape), 0, 1)
        y_test[j] = y_train[source]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "brightened-leak"}
'''

# the set augmented with left-right flips before it was split: mirrored copies in the test split
MIRRORED_LEAK_DATA = BRIGHTENED_LEAK_DATA.replace("x_train[source] * 0.9", "x_train[source][..., ::-1] * 0.9")


# 16x16 images (the digits at twice the size) augmented with random crops of a 2-pixel padding
# before the split: copies shifted by 1 or 2 pixels each way, zeros in the strips they bring in
CROPPED_LEAK_DATA = BRIGHTENED_LEAK_DATA.replace(
    'x = (d.images / 16.0).astype("float32")[:, None]',
    'x = np.kron((d.images / 16.0).astype("float32")[:, None], np.ones((1, 1, 2, 2), dtype="float32"))').replace(
    "x_test[j] = np.clip(x_train[source] * 0.9 + 0.08 + rng.normal(0, 0.015, x_train[source].shape), 0, 1)",
    "dy, dx = rng.choice([-2, -1, 1, 2], 2)\n"
    "        padded = np.pad(x_train[source], ((0, 0), (2, 2), (2, 2)))\n"
    "        x_test[j] = padded[:, 2 + dy:18 + dy, 2 + dx:18 + dx]")


@pytest.mark.parametrize("leaky_source", [BRIGHTENED_LEAK_DATA, MIRRORED_LEAK_DATA, CROPPED_LEAK_DATA],
                         ids=["brightened", "mirrored", "cropped"])
def test_a_brightened_copy_leak_fails_and_lists_its_pairs(tiny_project, leaky_source):
    leak = _audit_with_dataset(tiny_project, "leaky_data", leaky_source, "split_leakage")["split_leakage"]
    planted = {(3 * j, j) for j in range(0, 397, 6)}
    listed = {tuple(pair) for pair in leak["details"]["pairs_train_vs_split"]["test"]}
    # the audit carves its validation split out of x_train: a copy of a sample that went there is
    # paired with the validation sample instead (in the validation split's positions)
    via_val = {j for _, j in leak["details"]["pairs_val_vs_test"]}
    assert leak["status"] == "FAIL"
    assert len(listed & planted) + len(via_val & {j for _, j in planted}) >= 0.95 * len(planted)
    assert len(listed - planted) <= 3 and via_val <= {j for _, j in planted}
    if leaky_source is CROPPED_LEAK_DATA:  # the central windows were searched, at shifts of up to 2
        search = leak["details"]["shift_search"]["test"]
        assert {k: search[k] for k in ("largest_shift", "searched", "why")} == {"largest_shift": 2, "searched": True,
                                                                               "why": ""}


REPEATED_TEST_DATA = '''
import numpy as np
from sklearn.datasets import load_digits


def load():
    """A test set concatenated with a re-encoded copy of itself: every interval would count each
    input twice."""
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    x_test, y_test = x[1500:], y[1500:]
    copy = np.clip(np.round(x_test * 31) / 31, 0, 1).astype("float32")
    return {"x_train": x[:1500], "y_train": y[:1500], "x_test": np.concatenate([x_test, copy]),
            "y_test": np.concatenate([y_test, y_test]), "name": "repeated-test"}
'''


def test_a_test_set_that_repeats_itself_is_flagged_so_no_audit_of_it_passes(tiny_project):
    """A careless user's test split holds each input twice (the second time re-encoded): the
    intervals would be about 1.4 times too narrow. The check names the share and the copies, and
    its WARN keeps the audit's verdict from PASS."""
    found = _audit_with_dataset(tiny_project, "repeated_data", REPEATED_TEST_DATA, "test_duplicates")
    dup = found["test_duplicates"]
    assert dup["status"] == "WARN" and dup["value"] == pytest.approx(0.5, abs=0.01)
    assert report(tiny_project)["summary"]["verdict"] != "PASS"
    assert dup["details"]["example_part_too_narrow_by"] == pytest.approx(2 ** 0.5, abs=0.02)
    assert dup["details"]["distinct_inputs"] == pytest.approx(297, abs=3)
    assert [0, 297] in dup["details"]["pairs"]  # the first input and its copy, in test positions


def test_auto_seeds_judge_open_comparisons_again_with_more_seeds(tiny_project):
    """seeds = "auto" through the user contract: each comparison lists its looks; one that is
    still open after the configured 2 seeds is judged again at 3, at the split level."""
    tiny_project.makefile(".toml", pyproject=TINY_AUDIT_TOML.replace("seeds = [0, 1]", 'seeds = "auto"')
                          + "\n[tool.swiglu_audit.statistics]\nmax_seeds = 3\n")
    tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k", "clean_accuracy_vs_baseline")
    doc = report(tiny_project)
    [finding] = [f for f in doc["findings"] if f["check"] == "clean_accuracy_vs_baseline"]
    seq = finding["details"]["sequential"]
    assert seq["planned_looks"] == [2, 3] and seq["level_per_look"] == pytest.approx(0.975)
    assert finding["ci_level"] == pytest.approx(0.975)
    first = seq["history"][0]
    assert first["seeds"] == 2 and (len(seq["history"]) == 2) == (first["status"] == "WARN")
    assert doc["summary"]["auto_seeds"]["comparisons"] == 1
    assert doc["config"]["auto_seeds"] is True
