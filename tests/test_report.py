import json
import os
from importlib import resources

import jsonschema
import pytest

from swiglu_audit.checks.adversarial import WORST_CASE as PGD_ROBUST_ACCURACY
from swiglu_audit.checks.adversarial import WORST_CASE_COMPARISON as PGD_COMPARISON
from swiglu_audit.config import build_config
from swiglu_audit.pytest.relay import FindingCollector
from swiglu_audit.report.html import render_html
from swiglu_audit.report.writer import build_document, write_document
from swiglu_audit.verdicts.risk import Status, error_finding, make_finding

EVIL = '<script>alert("x")</script>'


def schema():
    return json.loads(resources.files("swiglu_audit").joinpath("schema/report.schema.json").read_text())


def sample_document(exit_status=0, name="swiglu-mlp"):
    findings = [
        make_finding(PGD_ROBUST_ACCURACY, [name], Status.WARN, f"robust accuracy low for {name}",
                     "rule", value=0.2, ci=(0.1, 0.3), ci_level=0.95, details={"note": name}),
        make_finding(PGD_COMPARISON, [name, "relu-mlp"], Status.PASS, "fine", "rule", value=-0.01,
                     ci=(-0.05, 0.03), ci_level=0.95),
        error_finding(PGD_ROBUST_ACCURACY, ["relu-mlp"], RuntimeError(f"boom {name}")),
    ]
    return build_document([f.to_dict() for f in findings], build_config(profile="quick"),
                          {"device": {"type": "cpu"}, "data": {"name": name, "sha256": {"train": "ab"}}},
                          exit_status)


def test_document_matches_the_published_schema():
    doc = sample_document()
    jsonschema.validate(doc, schema())
    assert doc["summary"]["verdict"] == "ERROR" and doc["summary"]["breaches_policy"]
    assert doc["findings"][0]["status"] == "ERROR"  # worst first
    assert not [c for c in doc["coverage"] if c["area"].startswith("Privacy")][0]["measured"]


def test_html_escapes_everything_a_user_or_model_supplies():
    html = render_html(sample_document(name=EVIL))
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "<script" not in html.lower()
    for marker in ('id="summary"', 'id="comparison"', 'id="suite-adversarial"', 'id="coverage"',
                   'id="policy"', 'id="reproducibility"', "<svg"):
        assert marker in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


def test_reports_are_written_and_interruption_is_recorded(tmp_path):
    paths = write_document(sample_document(exit_status=2), tmp_path / "out")
    assert set(paths) == {"report.json", "report.html", "findings.csv", "summary.md",
                          "oscal-assessment-results.json"}
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["summary"]["interrupted"] is True
    assert "interrupted" in (tmp_path / "out" / "report.html").read_text()
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]
    csv_lines = (tmp_path / "out" / "findings.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id,status") and len(csv_lines) == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_folder_falls_back_without_losing_findings(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.warns(Warning, match="written to"):
            paths = write_document(sample_document(), ro / "reports")
        assert json.loads(open(paths["report.json"]).read())["findings"]
    finally:
        ro.chmod(0o700)


def test_unwritable_target_falls_back_even_as_root(tmp_path):
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be")
    with pytest.warns(Warning, match="written to"):
        paths = write_document(sample_document(), blocker)
    assert len(json.loads(open(paths["report.json"]).read())["findings"]) == 3


def test_collector_merges_worker_meta():
    c = FindingCollector()
    meta = lambda w, hits: {"worker": w, "versions": {}, "device": {}, "data": {"name": "d"},
                            "cache": {"dir": "x", "hits": hits, "misses": 1, "healed": []},
                            "models": {f"m{w}": {"runs": {"clean": [{"seed": 0}]}}}}

    class R:
        when = "teardown"
        def __init__(self, props):
            self.user_properties = props

    c.pytest_runtest_logreport(R([("swiglu_audit.meta", json.dumps(meta("gw0", 2)))]))
    c.pytest_runtest_logreport(R([("swiglu_audit.meta", json.dumps(meta("gw1", 3)))]))
    c.pytest_runtest_logreport(R([("swiglu_audit.meta", json.dumps(meta("gw0", 5)))]))
    merged = c.merged_meta()
    assert merged["cache"]["hits"] == 8 and merged["cache"]["misses"] == 2
    assert set(merged["models"]) == {"mgw0", "mgw1"} and merged["workers"] == ["gw0", "gw1"]


def test_a_check_whose_xdist_worker_crashed_is_an_error_finding():
    """xdist reports the item a dead worker was running with when "???" and no teardown report
    follows: the check must leave an ERROR finding, not nothing (a report that could say PASS)."""
    c = FindingCollector()
    c.model_names = ["relu-mlp", "swiglu-mlp"]
    nodeid = "suite_adversarial.py::test_worst_case_robust_accuracy_vs_baseline[swiglu-mlp-vs-relu-mlp-linf]"
    crashed = pytest.TestReport(nodeid=nodeid, location=("suite_adversarial.py", None, ""), keywords={},
                                outcome="failed", longrepr=f"worker 'gw1' crashed while running {nodeid!r}",
                                when="???")  # type: ignore[arg-type]
    c.pytest_runtest_logreport(crashed)
    assert len(c.findings) == 1
    f = c.findings[0]
    assert (f["status"], f["suite"], f["check"]) == ("ERROR", "adversarial", PGD_COMPARISON.check)
    assert f["id"] == f"adversarial.{PGD_COMPARISON.check}[swiglu-mlp-vs-relu-mlp-linf]"
    assert f["models"] == ["swiglu-mlp", "relu-mlp"] and "WorkerCrashed: worker 'gw1' crashed" in f["reason"]
    # a crashed item that is no audit check (the project's own test) leaves none
    c.pytest_runtest_logreport(pytest.TestReport(nodeid="tests/test_x.py::test_y", location=("", None, ""),
                                                 keywords={}, outcome="failed", longrepr="x", when="???"))  # type: ignore[arg-type]
    assert len(c.findings) == 1


def test_oscal_export_has_observations_risks_with_facets_and_stable_ids():
    from swiglu_audit.report.oscal import render_oscal

    doc = sample_document()
    first, second = json.loads(render_oscal(doc)), json.loads(render_oscal(doc))
    assert first == second  # uuid5 from finding ids: re-rendering is stable
    ar = first["assessment-results"]
    assert ar["metadata"]["oscal-version"].startswith("1.1") and ar["import-ap"]["href"]
    result = ar["results"][0]
    assert len(result["observations"]) == 3
    assert len(result["risks"]) == 2  # WARN and ERROR become risks; PASS does not
    facets = {f["name"]: f["value"] for f in result["risks"][0]["characterizations"][0]["facets"]}
    assert set(facets) == {"likelihood", "impact", "risk"}
    targets = {f["target"]["target-id"] for f in result["findings"]}
    assert "measure-2.7" in targets
    obs_ids = {o["uuid"] for o in result["observations"]}
    assert all(r["observation-uuid"] in obs_ids for f in result["findings"] for r in f["related-observations"])


def test_markdown_summary_lists_what_is_not_pass():
    from swiglu_audit.report.markdown import render_markdown

    md = render_markdown(sample_document(name="a|b"))
    assert md.startswith("## swiglu-audit: ERROR")
    assert "a\\|b" in md and md.count("\n| ") == 3  # header row + WARN + ERROR rows


def test_a_real_audit_report_validates_against_the_schema(tiny_audit_report):
    jsonschema.validate(tiny_audit_report, schema())
    assert {f["suite"] for f in tiny_audit_report["findings"]} == {
        "adversarial", "poisoning", "ood", "numerical", "efficiency", "deployment", "fairness", "privacy"}


def test_a_real_report_draws_the_curves_of_every_suite_and_the_detector_tables(tiny_audit_report):
    from swiglu_audit.checks.suite_catalog import SUITES

    html = render_html(tiny_audit_report)
    levels = {f["details"].get("level") for f in tiny_audit_report["findings"]}
    for suite, info in SUITES.items():
        for plot in info.curves:
            if plot.level == "l2" and "l2" not in levels:
                continue  # the tiny audit runs no L2 attack
            if plot.check == "group_disparity":
                continue  # the tiny audit names no groups (test_fairness draws that plot)
            assert f'aria-label="{plot.heading}"' in html, (suite, plot.heading)
    # the OOD detector x set x metric table, rendered as a table, not only as JSON
    assert "<th>fpr95_ci_high</th>" in html and "<th>corruption_error_vs_reference</th>" in html


def test_records_table_escapes_its_cells():
    from swiglu_audit.report.html import records_table

    table = records_table([{"detector": EVIL, "auroc": 0.5}])
    assert EVIL not in table and "&lt;script&gt;" in table and "0.5000" in table
    assert records_table(None) == "" and records_table([1, 2]) == ""


def test_reports_are_as_readable_as_any_new_file(tmp_path):
    import stat

    paths = write_document(sample_document(), tmp_path / "out")
    mask = os.umask(0)
    os.umask(mask)
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("lo, hi", [(0.05, 0.3), (0, 1), (0, 0.02), (1e6, 9.7e8), (-0.07, 0.1), (0, 5), (0.013, 0.014)])
def test_plot_ticks_are_round_evenly_spaced_and_inside_the_range(lo, hi):
    import math

    from swiglu_audit.report.ticks import nice_ticks

    ticks = nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 6
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


def test_a_lone_surrogate_or_a_nan_from_a_baseline_costs_no_report_file(tmp_path):
    """Text Python decoded from a non-UTF-8 file name (in an exception a user's code raised) and a
    NaN read back from a saved baseline reach every format, and every file is still written."""
    import json

    doc = sample_document()
    doc["findings"][0]["reason"] = "the check could not run: OSError: no file '\udce9t\u00e9.npz'"
    doc["comparison"] = {"baseline": "old/report.json", "regressions": 0, "environment_differences": [],
                         "changes": [{"id": doc["findings"][0]["id"], "kind": "value", "old_status": "PASS",
                                      "new_status": "PASS", "old_value": float("nan"), "new_value": 0.5,
                                      "old_ci": None, "new_ci": None, "regression": False, "why": ""}]}
    paths = write_document(doc, tmp_path / "out")
    assert sorted(paths) == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(paths) == 5
    written = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert "\\udce9t\u00e9.npz" in written["findings"][0]["reason"]
    assert written["comparison"]["changes"][0]["old_value"] is None


def test_a_format_that_cannot_be_rendered_leaves_the_others_and_no_stale_file(tmp_path, monkeypatch):
    from swiglu_audit.report import markdown

    out = tmp_path / "out"
    write_document(sample_document(), out)  # last night's summary.md is there
    monkeypatch.setattr(markdown, "render_markdown", lambda doc: 1 / 0)
    with pytest.warns(Warning, match="could not render summary.md"):
        paths = write_document(sample_document(exit_status=1), out)
    assert "summary.md" not in paths and not (out / "summary.md").exists()
    assert {"report.json", "report.html", "findings.csv", "oscal-assessment-results.json"} <= set(paths)
