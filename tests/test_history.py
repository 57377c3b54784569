"""Saved audits, compare and gates: unit tests on hand-made reports, then a scheduled-CI run
through the user contract that catches a planted regression and passes an unchanged re-run."""

import json
from pathlib import Path

import pytest
from test_report import sample_document

from swiglu_audit.config import OPT_COMPARE, OPT_ENABLE, OPT_SAVE
from swiglu_audit.scheduled import history
from swiglu_audit.scheduled.history import resolve_baseline, save_run, saved_runs
from swiglu_audit.scheduled.regressions import Gate, compare, parse_gates, render_comparison


def _doc(value=0.5, ci=(0.45, 0.55), status="PASS", better="higher", extra=()):
    doc = sample_document()
    f = dict(doc["findings"][1], id="adversarial.worst_case_robust_accuracy[m]", check="worst_case_robust_accuracy",
             value=value, ci_low=ci[0], ci_high=ci[1], status=status, details={"better": better})
    doc["findings"] = [f, *extra]
    return doc


def test_a_worse_value_beyond_the_gate_and_the_intervals_is_a_regression():
    result = compare(_doc(0.5, (0.45, 0.55)), _doc(0.3, (0.25, 0.35)), parse_gates({"default": "0.05"}))
    assert [c.id for c in result.regressions] == ["adversarial.worst_case_robust_accuracy[m]"]
    why = result.regressions[0].why
    assert "0.5 -> 0.3" in why and "default = 0.05" in why and "[0.45, 0.55]" in why


@pytest.mark.parametrize("new, gates", [
    ((0.4, (0.25, 0.55)), {"default": "0.05"}),  # 0.05 past the gate, z = 0.56 on the intervals: noise
    ((0.47, (0.46, 0.48)), {"default": "0.05"}),  # within the gate
    ((0.7, (0.65, 0.75)), {"default": "0.05"}),  # better, not worse
    ((0.3, (0.25, 0.35)), {"default": "50%"}),  # a relative gate: 0.2 of 0.5 is 40% < 50%
    ((0.47, (0.42, 0.52)), {}),  # no gate: a worsening of 0.03 that the intervals cannot tell from noise
])
def test_changes_within_the_noise_or_the_gate_do_not_trip(new, gates):
    result = compare(_doc(0.5, (0.45, 0.55)), _doc(*new), parse_gates(gates))
    assert not result.regressions
    assert [c.kind for c in result.changes] == ["value"]


def test_direction_comes_from_the_check_and_a_worse_status_always_trips():
    lower = compare(_doc(0.1, (0.05, 0.15), better="lower"), _doc(0.4, (0.35, 0.45), better="lower"),
                    {"default": Gate(0.05)})
    assert lower.regressions
    status = compare(_doc(0.5, status="PASS"), _doc(0.5, status="WARN"))
    assert status.regressions and "PASS -> WARN" in status.regressions[0].why


def test_indicative_wall_clock_findings_are_listed_but_never_gate():
    def timing(status, value):
        doc = _doc(value, (value - 0.01, value + 0.01), status=status, better="lower")
        doc["findings"][0]["details"]["indicative"] = True
        return doc
    result = compare(timing("PASS", 0.1), timing("WARN", 0.9), parse_gates({"default": "0.05"}))
    assert not result.regressions
    assert [c.kind for c in result.changes] == ["status"] and "not gated" in result.changes[0].why


def test_added_and_removed_findings_and_setup_differences_are_listed():
    old, new = _doc(), _doc()
    extra = dict(old["findings"][0], id="extra[x]")
    new["findings"].append(extra)
    new["config"] = dict(new["config"], seeds=[7])
    result = compare(old, new)
    assert {c.kind for c in result.changes} == {"same", "added"}
    assert any("seeds" in d for d in result.environment_differences)
    text = "\n".join(render_comparison(result, "old", "new"))
    assert "added" in text and "extra[x]" in text and "setup" in text


def test_a_finding_the_new_run_lacks_trips_the_gate_unless_the_run_was_narrowed_on_purpose():
    dropped = dict(_doc()["findings"][0], id="adversarial.worst_case_robust_accuracy[gone]", status="FAIL")
    old, new = _doc(extra=(dropped,)), _doc()
    lost = compare(old, new)
    assert [c.id for c in lost.regressions] == [dropped["id"]]
    assert lost.regressions[0].kind == "removed" and "no longer checked: it was FAIL" in lost.regressions[0].why
    assert "REGRESSION  adversarial.worst_case_robust_accuracy[gone]: removed" in render_comparison(lost, "a", "b")[1]
    narrowed = compare(old, new, partial="this run checks a part of the audit (keyword=ood)")
    assert not narrowed.regressions and "not gated: this run checks a part" in narrowed.changes[0].why
    timing = dict(dropped, details={"better": "lower", "indicative": True})  # wall-clock: listed, never gated
    assert not compare(_doc(extra=(timing,)), new).regressions


def test_a_run_narrowed_on_purpose_says_why_and_a_selection_that_leaves_every_check_in_does_not(pytester):
    from swiglu_audit.pytest.plugin import suites_dir
    from swiglu_audit.pytest.relay import DESELECTED_KEY
    from swiglu_audit.pytest.warm import narrowed_by

    suites = str(suites_dir())
    assert narrowed_by(pytester.parseconfig(), suites) == ""
    # an option alone narrows nothing (`-m "not slow"` in a project's addopts deselects no check)
    assert narrowed_by(pytester.parseconfig("-m", "not slow"), suites) == ""
    selected = pytester.parseconfig("-k", "ood")
    selected.stash[DESELECTED_KEY] = 7  # as pytest_deselected counts them
    assert "7 check(s) deselected by keyword=ood" in narrowed_by(selected, suites)
    assert "suite_ood.py" in narrowed_by(pytester.parseconfig(f"{suites}/suite_ood.py"), suites)
    assert narrowed_by(pytester.parseconfig(suites), suites) == ""  # the suites' folder: every check


def test_a_partial_run_never_becomes_the_baseline_even_without_a_comparison():
    from swiglu_audit.scheduled.history import gates_passed

    shard = _doc()
    shard["partial"] = "this run checks a part of the audit (12 check(s) deselected by swiglu_audit_shard=1/3)"
    assert not gates_passed(shard) and gates_passed(_doc())


def _two_seed_floor(value, se, df):
    """A Floor finding whose interval is a t-interval of `df` degrees of freedom, as two seeds give."""
    from scipy.stats import t

    half = float(t.ppf(0.975, df)) * se
    doc = _doc(value, (value - half, value + half))
    doc["findings"][0]["details"]["judged"] = {"rule": "floor", "df": df}
    return doc


def test_the_two_run_test_reads_each_interval_at_its_own_degrees_of_freedom():
    # 0.15 down on standard errors of 0.02: five standard errors of the difference, far past the
    # noise. Read with the normal quantile, two-seed intervals (+-0.25) passed for a +-0.13 spread,
    # and the drop was absorbed (z = 0.82)
    result = compare(_two_seed_floor(0.60, 0.02, 1.0), _two_seed_floor(0.45, 0.02, 1.0))
    assert len(result.regressions) == 1 and "Welch" in result.regressions[0].why
    # and the critical value is t's at the two intervals' Welch df (2 here), not the normal 1.96
    assert not compare(_two_seed_floor(0.60, 0.02, 1.0), _two_seed_floor(0.50, 0.02, 1.0)).regressions


def test_the_two_run_test_reads_the_t_intervals_error_where_an_end_was_moved_past_it():
    """A 0/1 mean's interval can reach further toward 1/2 than its t-interval (the log-odds reach,
    `stats.Estimate.se`); read back from that width, the standard error would be several times
    too large and a real drop absorbed."""
    def floor(value, reached_half):
        doc = _doc(value, (value - 0.02, value + reached_half))
        doc["findings"][0]["details"]["judged"] = {"rule": "floor", "df": 30.0, "se": 0.01}
        return doc

    assert compare(floor(0.20, 0.02), floor(0.13, 0.02)).regressions  # 7 points on errors of 0.01
    assert compare(floor(0.20, 0.30), floor(0.13, 0.30)).regressions  # the same, whatever the reach
    before, after = floor(0.20, 0.30), floor(0.13, 0.30)
    for doc in (before, after):
        del doc["findings"][0]["details"]["judged"]["se"]
    assert not compare(before, after).regressions  # read off the width: absorbed


def test_a_mean_says_its_t_intervals_error_only_where_the_reach_moved_an_end():
    import numpy as np

    from swiglu_audit.verdicts.stats import mean_interval

    rng = np.random.default_rng(3)
    spread = np.zeros((3, 360), dtype=bool)
    for seed, rate in enumerate((0.02, 0.03, 0.25)):  # one seed far above the other two
        spread[seed] = rng.random(360) < rate
    moved = mean_interval(spread)
    from scipy.stats import t

    assert moved.se is not None and moved.ci_high > moved.value + float(t.ppf(0.975, moved.df)) * moved.se
    agreeing = mean_interval(rng.normal(0.5, 0.1, (3, 360)))
    assert agreeing.se is None


def test_the_two_run_test_holds_its_level_and_finds_real_drops_at_two_and_three_seeds():
    """Simulated nights of seed-dominated noise, judged through the audit's own intervals: a true
    no-change trips the one-sided 2.5% test about 2.5% of the time, not twice that, and a drop of
    five standard deviations of the difference is caught most of the time."""
    import numpy as np

    from swiglu_audit.verdicts.stats import mean_interval

    rng = np.random.default_rng(0)

    def night(seeds, shift):
        e = mean_interval(0.6 + shift + rng.normal(0, 0.03, (seeds, 1)) + rng.normal(0, 0.05, (seeds, 400)))
        doc = _doc(e.value, (e.ci_low, e.ci_high))
        doc["findings"][0]["details"]["judged"] = {"rule": "floor", "df": e.df}
        return doc

    for seeds in (2, 3):
        sd = 0.03 * np.sqrt(2 / seeds)  # of the difference of two nights' seed means
        alarms = np.mean([bool(compare(night(seeds, 0), night(seeds, 0)).regressions) for _ in range(300)])
        caught = np.mean([bool(compare(night(seeds, 0), night(seeds, -5 * sd)).regressions) for _ in range(150)])
        assert alarms <= 0.045, (seeds, alarms)
        assert caught >= (0.3 if seeds == 2 else 0.6), (seeds, caught)


def test_gates_must_parse():
    with pytest.raises(ValueError, match="0.02"):
        Gate.parse("lots", "default")
    assert Gate.parse("5%", "x") == Gate(0.05, relative=True)


def test_saving_is_atomic_and_a_failed_save_leaves_no_entry(tmp_path, monkeypatch):
    first = save_run(tmp_path, _doc())
    assert [r["path"] for r in saved_runs(tmp_path)] == [str(first)]
    assert resolve_baseline("last", tmp_path) == first / "report.json"
    assert resolve_baseline(first.name, tmp_path) == first / "report.json"

    def dies(path, text):  # the run is killed while it writes the second file
        if path.name == "run.json":
            raise KeyboardInterrupt
        (path).write_text(text)
    monkeypatch.setattr(history, "atomic_write_text", dies)
    with pytest.raises(KeyboardInterrupt):
        save_run(tmp_path, _doc())
    assert len(saved_runs(tmp_path)) == 1 and [p.name for p in tmp_path.iterdir()] == [first.name]
    with pytest.raises(FileNotFoundError, match="swiglu-audit history"):
        resolve_baseline("no-such-run", tmp_path)
    assert resolve_baseline("last", tmp_path / "empty") is None


MODELS = '''
from swiglu_audit.training.nn import ModelConfig, build_model

def make_swiglu(input_shape, n_classes):
    return build_model(ModelConfig(ffn="swiglu", input_shape=input_shape, n_classes=n_classes, d_model=32, ffn_hidden=96))

def make_relu(input_shape, n_classes):
    return build_model(ModelConfig(ffn="relu", input_shape=input_shape, n_classes=n_classes, d_model=32, ffn_hidden=96))

def make_weak_swiglu(input_shape, n_classes):  # the planted regression: a much narrower model
    return build_model(ModelConfig(ffn="swiglu", input_shape=input_shape, n_classes=n_classes, d_model=2, ffn_hidden=2))
'''


def _configure(pytester, candidate):
    pytester.makepyfile(usermodels=MODELS)
    pytester.makefile(".toml", pyproject=f"""
[tool.swiglu_audit]
profile = "quick"
seeds = [0, 1]
[tool.swiglu_audit.training]
epochs = 4
[tool.swiglu_audit.gates]
default = "0.02"
[[tool.swiglu_audit.models]]
name = "candidate"
factory = "usermodels:{candidate}"
role = "candidate"
[[tool.swiglu_audit.models]]
name = "baseline"
factory = "usermodels:make_relu"
""")


def test_a_scheduled_audit_catches_a_planted_regression_and_passes_an_unchanged_rerun(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    pytester.syspathinsert()
    args = (OPT_ENABLE, "-p", "no:cacheprovider", "-k", "clean_accuracy or (worst_case and not vs_baseline)")
    _configure(pytester, "make_swiglu")
    first = pytester.runpytest_subprocess(*args, OPT_SAVE, f"{OPT_COMPARE}=last")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["*compare: first run: nothing saved*"])
    unchanged = pytester.runpytest_subprocess(*args, OPT_SAVE, f"{OPT_COMPARE}=last")
    assert unchanged.ret == 0
    unchanged.stdout.fnmatch_lines(["*0 finding(s) changed since the baseline, 0 regression(s)*"])
    runs = saved_runs(pytester.path / ".swiglu-audit-history")
    assert len(runs) == 2 and runs[0]["config_digest"] == runs[1]["config_digest"]
    # -k left checks out: each saved run says so, and none is a baseline by itself
    assert all("check(s) deselected by keyword=" in json.loads((Path(r["path"]) / "report.json").read_text())["partial"]
               for r in runs) and not any(r["gates_passed"] for r in runs)
    # a gate that cannot find its baseline has not passed: the same clean audit now exits 1; under
    # xdist the workers' deselections reach the controller
    lost = pytester.runpytest_subprocess(*args, "-n", "2", f"{OPT_COMPARE}=no-such-run")
    assert lost.ret == 1
    lost.stdout.fnmatch_lines(["*the gate could not run, so this audit fails it*no-such-run*"])
    assert "check(s) deselected by keyword=" in json.loads((pytester.path / "reports" / "report.json").read_text())["partial"]

    _configure(pytester, "make_weak_swiglu")  # the candidate swapped for a weaker model
    result = pytester.runpytest_subprocess(*args, f"{OPT_COMPARE}=last")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*setup differs: configuration differs in models*",
                                 "REGRESSION  efficiency.clean_accuracy_vs_baseline?candidate-vs-baseline?: "
                                 "status got worse: PASS -> FAIL (gate: any worse status), * -> -0.*",
                                 "*3 regression(s) (exit 1)*"])
    doc = json.loads((pytester.path / "reports" / "report.json").read_text())
    regression = [c for c in doc["comparison"]["changes"] if c["regression"] and c["id"].startswith("efficiency")][0]
    assert regression["new_value"] < regression["old_value"] - 0.02
    html = (pytester.path / "reports" / "report.html").read_text()
    assert "Changed since the last run" in html
    # the trend over the two saved runs and this one, with the candidate's and the baseline's line
    assert len(doc["trend"]["runs"]) == 3
    assert set(doc["trend"]["series"]["adversarial"]) == {"candidate", "baseline"}
    assert 'id="trend"' in html and "worst_case_robust_accuracy[linf] across 3 runs" in html
    # the same comparison from the command line, on the saved run and the new report
    from swiglu_audit.cli import main

    monkeypatch.chdir(pytester.path)
    assert main(["compare", "last", "reports/report.json"]) == 1
    assert main(["compare", runs[0]["id"], runs[1]["id"]]) == 0
    assert main(["history"]) == 0


def test_without_a_gate_a_significant_worsening_is_a_regression_by_default():
    """The issue's case: 0.558 [0.479, 0.642] -> 0.358 [0.279, 0.442], status still PASS, no gates."""
    result = compare(_doc(0.558, (0.479, 0.642)), _doc(0.358, (0.279, 0.442)), {})
    assert len(result.regressions) == 1 and "no gate set" in result.regressions[0].why
    assert "t = 3.40 > 1.96" in result.regressions[0].why  # no df saved: the normal quantile


def _night(folder, value, ci_half=0.02, gates=None, compare_with="accepted", suffix=""):
    """One nightly audit: compare with the history (as the plugin does), then save it."""
    from types import SimpleNamespace

    from swiglu_audit.report.writer import compare_with_saved

    doc = _doc(value, (value - ci_half, value + ci_half))
    doc["findings"][0]["id"] += suffix
    config = SimpleNamespace(history_dir=folder, compare_with=compare_with, gates=gates or {})
    doc["comparison"] = compare_with_saved(doc, config)
    save_run(folder, doc)
    return doc["comparison"]["regressions"]


def test_a_sudden_drop_is_caught_and_stays_caught_until_a_person_accepts_it(tmp_path):
    assert _night(tmp_path, 0.60) == 0  # first run: the first baseline
    assert _night(tmp_path, 0.60) == 0
    assert _night(tmp_path, 0.40) == 1  # the drop, status still PASS
    assert _night(tmp_path, 0.40) == 1  # same values the next night: the regressed run is no baseline
    dropped = saved_runs(tmp_path)[2]
    assert dropped["gates_passed"] is False
    history.accept_run(tmp_path, dropped["id"], "retrained on the new data; drop reviewed", who="risk-owner")
    assert _night(tmp_path, 0.40) == 0  # accepted: the new normal
    assert saved_runs(tmp_path)[2]["accepted"]["by"] == "risk-owner"


def test_small_declines_under_the_gate_add_up_against_the_anchor(tmp_path):
    gates = {"default": "0.05"}
    nights = [_night(tmp_path, 0.70 - 0.02 * k, ci_half=0.01, gates=gates) for k in range(6)]
    # each step is 0.02 (under the gate). Against the anchor (the first run): night 4 is 0.06 down,
    # 0.01 past the gate, which intervals of +-0.01 cannot tell from noise (z = 1.4); night 5 is
    # 0.08 down (z = 4.2), caught, and so is every night after it
    assert nights == [0, 0, 0, 0, 1, 1], nights


def test_a_steady_decline_inside_the_noise_of_each_step_is_caught_by_the_trend_test():
    docs = [_doc(0.60 - 0.01 * k, (0.50 - 0.01 * k, 0.70 - 0.01 * k)) for k in range(7)]
    result = compare(docs[-2], docs[-1], parse_gates({"default": "0.05"}), past_docs=docs[:-1])
    assert len(result.regressions) == 1 and "Mann-Kendall" in result.regressions[0].why
    flat = [_doc(0.6 + (0.01 if k % 2 else -0.01), (0.5, 0.7)) for k in range(7)]
    assert not compare(flat[-2], flat[-1], parse_gates({"default": "0.05"}), past_docs=flat[:-1]).regressions


def test_accepting_needs_a_reason_and_a_saved_run(tmp_path):
    save_run(tmp_path, _doc())
    with pytest.raises(ValueError, match="reason"):
        history.accept_run(tmp_path, saved_runs(tmp_path)[0]["id"], " ")
    with pytest.raises(FileNotFoundError, match="no saved run"):
        history.accept_run(tmp_path, "nope", "why")


def test_the_html_trend_plot_marks_the_baseline_and_a_flagged_decline(tmp_path):
    from types import SimpleNamespace

    from swiglu_audit.report.html import trend_section
    from swiglu_audit.report.writer import compare_with_saved
    from swiglu_audit.scheduled.history import trend

    for k in range(6):
        _night(tmp_path, 0.60 - 0.005 * k, ci_half=0.05, suffix="[linf]")
    doc = _doc(0.57, (0.52, 0.62))
    doc["findings"][0]["id"] += "[linf]"  # the adversarial suite's trend plots the Linf worst case
    doc["comparison"] = compare_with_saved(doc, SimpleNamespace(history_dir=tmp_path, compare_with="accepted", gates={}))
    doc["trend"] = trend(tmp_path, doc, {"adversarial": ("worst_case_robust_accuracy", "[linf]")})
    html = trend_section(doc)
    assert ">baseline</text>" in html and ">anchor</text>" in html and ">trend flagged</text>" in html
    assert doc["trend"]["notes"] == [] and len(doc["trend"]["runs"]) == 7

    # a saved run whose report was damaged is left out of the plot, and the report says which
    damaged = sorted(p for p in tmp_path.iterdir() if p.is_dir())[2]
    (damaged / "report.json").write_text("{ not json")
    doc["trend"] = trend(tmp_path, doc, {"adversarial": ("worst_case_robust_accuracy", "[linf]")})
    assert len(doc["trend"]["runs"]) == 6 and doc["trend"]["run_ids"].count(damaged.name) == 0
    assert len(doc["trend"]["notes"]) == 1 and damaged.name in doc["trend"]["notes"][0]
    assert damaged.name in trend_section(doc)
    # every saved report damaged: nothing left to plot, and the section still says why
    for run in (p for p in tmp_path.iterdir() if p.is_dir()):
        (run / "report.json").write_text("{ not json")
    doc["trend"] = trend(tmp_path, doc, {"adversarial": ("worst_case_robust_accuracy", "[linf]")})
    assert len(doc["trend"]["runs"]) == 1 and len(doc["trend"]["notes"]) == 6
    assert trend_section(doc).count("cannot be read") == 6


def test_a_run_that_lost_a_finding_or_its_baseline_never_becomes_the_baseline(tmp_path):
    from swiglu_audit.scheduled.history import gates_passed

    kept = _doc()
    dropped = _doc(extra=())
    dropped["findings"] = []
    dropped["comparison"] = {"regressions": 0, "changes": [{"kind": "removed", "id": kept["findings"][0]["id"]}]}
    assert not gates_passed(dropped)
    unreadable = _doc()
    unreadable["comparison"] = {"regressions": 0, "changes": [], "error": True, "note": "cannot be read"}
    assert not gates_passed(unreadable) and gates_passed(_doc())


def test_lf_and_ignored_suites_narrow_a_run(pytester):
    from swiglu_audit.pytest.plugin import suites_dir
    from swiglu_audit.pytest.warm import narrowed_by

    suites = str(suites_dir())
    last_failed = pytester.parseconfigure("--lf")
    assert narrowed_by(last_failed, suites) == ""  # no failure recorded: --lf runs every check
    last_failed.pluginmanager.get_plugin("lfplugin").lastfailed = {"suite_ood.py::test_x": True}
    assert "--lf" in narrowed_by(last_failed, suites)
    assert "ignored" in narrowed_by(pytester.parseconfig(f"--ignore={suites}/suite_ood.py"), suites)


def test_merged_shards_keep_no_shard_s_partial_or_comparison():
    from swiglu_audit.report.writer import merge_documents

    first, second = _doc(), _doc()
    second["findings"] = [dict(second["findings"][0], id="adversarial.worst_case_robust_accuracy[n]")]
    for k, doc in enumerate((first, second), 1):
        doc["partial"] = f"this run checks a part of the audit (swiglu_audit_shard={k}/2)"
        doc["comparison"] = {"regressions": 0, "changes": []}
    merged = merge_documents([first, second])
    assert "partial" not in merged and "comparison" not in merged and len(merged["findings"]) == 2


def _audit_config(tmp_path, **options):
    from swiglu_audit.config import build_config

    return build_config({"history_dir": str(tmp_path / "history")}, profile="quick", project_root=tmp_path,
                        report_dir=str(tmp_path / "reports"), **options)


def _collector(doc):
    from types import SimpleNamespace

    return SimpleNamespace(findings=doc["findings"], plan=None,
                           merged_meta=lambda: {"device": {"type": "cpu"}, "data": {"name": "toy"}})


@pytest.mark.parametrize("damage", [
    {}, [], {"schema_version": 1}, "not json",
    "no metric",  # a finding without its metric and reason: compare's KeyError
])
def test_a_damaged_baseline_fails_the_gate_with_the_fix_and_every_report_is_still_written(tmp_path, damage):
    from swiglu_audit.report.markdown import render_markdown
    from swiglu_audit.report.terminal import comparison_lines
    from swiglu_audit.report.writer import write_reports

    config = _audit_config(tmp_path, compare_with="accepted")
    baseline = save_run(config.history_dir, _doc()) / "report.json"
    if damage == "no metric":
        doc = _doc()
        doc["findings"] = [{k: v for k, v in f.items() if k not in ("metric", "reason")} for f in doc["findings"]]
        baseline.write_text(json.dumps(doc))
    else:
        baseline.write_text(damage if isinstance(damage, str) else json.dumps(damage))
    paths, document = write_reports(_collector(_doc()), config, 0)
    comparison = document["comparison"]
    assert comparison["error"] is True and comparison["regressions"] == 0
    assert "cannot be read" in comparison["note"] and "swiglu-audit accept RUN-ID" in comparison["note"]
    assert str(baseline) in comparison["note"]
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert written["comparison"]["error"] is True and len(written["findings"]) == 1
    # every reader sees that the gate failed: not "0 regression(s)" and nothing else
    html = (tmp_path / "reports" / "report.html").read_text()
    assert "swiglu-audit accept RUN-ID" in html and "the gate could not run" in html
    assert "could not run" in render_markdown(document) and "accept RUN-ID" in render_markdown(document)
    lines = [text for text, _ in comparison_lines(comparison)]
    assert any(t.startswith("ERROR  compare: the gate could not run") and "accept RUN-ID" in t for t in lines)
    assert set(paths) >= {"report.json", "report.html", "summary.md"}


def test_malformed_history_entries_are_skipped_with_a_note(tmp_path):
    from swiglu_audit.report.writer import compare_with_saved
    from swiglu_audit.scheduled.history import past_reports, trend

    good = save_run(tmp_path, _doc(0.6))
    listless = save_run(tmp_path, _doc(0.5))
    (listless / "run.json").write_text("[]")
    idless = save_run(tmp_path, _doc(0.5))
    (idless / "run.json").write_text(json.dumps({"time": "x"}))
    shapeless = save_run(tmp_path, _doc(0.55))
    (shapeless / "report.json").write_text(json.dumps({"schema_version": 1, "findings": [{"id": "x"}]}))
    notes: list[str] = []
    runs = saved_runs(tmp_path, notes)
    assert [r["path"] for r in runs] == [str(good), str(shapeless)]
    assert len(notes) == 2 and listless.name in notes[0] and idless.name in notes[1]
    assert [d["findings"][0]["value"] for d in past_reports(tmp_path)] == [0.6]  # the damaged report left out
    checks = {"adversarial": ("worst_case_robust_accuracy", "")}
    current = _doc(0.58)
    series = trend(tmp_path, current, checks)
    assert series["run_ids"] == [good.name, None] and series["series"]["adversarial"]["swiglu-mlp"] == [[1, 0.6], [2, 0.58]]
    # `last` is the damaged report: the gate fails, and the skipped entries are said
    from types import SimpleNamespace

    comparison = compare_with_saved(current, SimpleNamespace(history_dir=tmp_path, compare_with="last", gates={}))
    assert comparison["error"] and shapeless.name in comparison["note"]
    assert any(listless.name in n for n in comparison["history_notes"])


def test_an_unreadable_anchor_fails_the_gate_instead_of_turning_the_drift_check_off(tmp_path):
    from types import SimpleNamespace

    from swiglu_audit.report.writer import compare_with_saved

    anchor = save_run(tmp_path, _doc(0.70, (0.69, 0.71)))
    save_run(tmp_path, _doc(0.66, (0.65, 0.67)))
    (anchor / "report.json").write_text("{broken")
    comparison = compare_with_saved(_doc(0.66, (0.65, 0.67)),
                                    SimpleNamespace(history_dir=tmp_path, compare_with="accepted", gates={}))
    assert comparison["error"] is True and comparison["anchor"] is None
    assert f"the anchor run {anchor.name} cannot be read" in comparison["note"]
    assert comparison["baseline"] != str(anchor / "report.json") and comparison["regressions"] == 0


def test_a_damaged_acceptance_keeps_its_run_and_history_reads_a_partial_one(tmp_path, capsys):
    from swiglu_audit.cli import main
    from swiglu_audit.scheduled.history import accepted_baseline

    save_run(tmp_path, _doc())
    second = save_run(tmp_path, _doc())
    (second / "accepted.json").write_text("{damaged")
    notes: list[str] = []
    runs = saved_runs(tmp_path, notes)
    assert [r["path"] for r in runs][-1] == str(second) and runs[-1]["accepted"] is None
    assert "accepted.json is damaged" in notes[0] and f"swiglu-audit accept {second.name}" in notes[0]
    assert accepted_baseline(tmp_path)["path"] == str(second)  # not the older run
    assert main(["history", str(tmp_path)]) == 0
    assert "accepted.json is damaged" in capsys.readouterr().err
    (second / "accepted.json").write_text(json.dumps({"by": "risk-owner"}))  # valid JSON, keys missing
    assert main(["history", str(tmp_path)]) == 0
    assert "accepted by risk-owner at ?: ?" in capsys.readouterr().out


@pytest.mark.parametrize("exit_status, written, saved", [(0, True, True), (1, True, True), (2, True, False),
                                                         (4, False, False), (5, True, False)])
def test_only_a_run_that_ran_to_its_end_is_saved_and_a_usage_error_writes_no_report(tmp_path, exit_status,
                                                                                     written, saved):
    from swiglu_audit.report.writer import write_reports

    config = _audit_config(tmp_path, save=True)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.json").write_text('{"the last run": 1}')
    paths, _ = write_reports(_collector(_doc()), config, exit_status)
    last = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert ("the last run" not in last) == written and bool(paths) == written
    assert len(saved_runs(config.history_dir)) == int(saved)
