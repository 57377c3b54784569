"""One audit split over machines: shards are disjoint, cover every check, and merge into the
report an unsharded run writes."""

import json

import pytest
from test_plugin import report

from swiglu_audit.config import OPT_ENABLE, OPT_REPORT_DIR, OPT_SHARD
from swiglu_audit.errors import ConfigError
from swiglu_audit.pytest.sharding import parse_shard, shard_of


def _key(doc):
    """Every finding's id, status and value; wall-clock timings (indicative) by id alone."""
    return sorted((f["id"], *(() if f["details"].get("indicative") else
                              (f["status"], None if f["value"] is None else round(f["value"], 9))))
                  for f in doc["findings"])


def test_a_sharded_audit_merges_into_the_unsharded_findings(tiny_project, monkeypatch):
    from swiglu_audit.cli import main

    args = (OPT_ENABLE, "-p", "no:cacheprovider", "-k", "adversarial or efficiency or poison_detection")
    tiny_project.runpytest_subprocess(*args, f"{OPT_REPORT_DIR}=whole")
    for k in (1, 2):
        tiny_project.runpytest_subprocess(*args, f"{OPT_SHARD}={k}/2", f"{OPT_REPORT_DIR}=shard-{k}")
    whole, one, two = report(tiny_project, "whole"), report(tiny_project, "shard-1"), report(tiny_project, "shard-2")
    ids = lambda doc: {f["id"] for f in doc["findings"]}
    assert ids(one) and ids(two) and not ids(one) & ids(two)  # disjoint, both non-empty
    monkeypatch.chdir(tiny_project.path)
    main(["merge", "shard-1/report.json", "shard-2/report.json", "-o", "merged"])
    merged = report(tiny_project, "merged")
    assert _key(merged) == _key(whole)
    # status counts, wall-clock timings (indicative) aside: their status moves with the machine's load
    counts = lambda doc: sorted(f["status"] for f in doc["findings"] if not f["details"].get("indicative"))
    assert counts(merged) == counts(whole)
    assert sum(merged["summary"]["counts"].values()) == len(merged["findings"]) == len(whole["findings"])
    assert merged["environment"]["shards"] == 2
    assert [c["measured"] for c in merged["coverage"]] == [c["measured"] for c in whole["coverage"]]


def test_shard_arguments_and_the_split_are_checked():
    assert parse_shard("2/3") == (1, 3)
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(ConfigError, match="K/N"):
            parse_shard(bad)
    ids = [f"test_x[m{i}]" for i in range(300)]
    counts = [sum(shard_of(i, 3) == s for i in ids) for s in range(3)]
    assert sum(counts) == 300 and min(counts) > 60  # every id in exactly one shard, roughly even
    assert [shard_of(i, 3) for i in ids] == [shard_of(i, 3) for i in ids]  # stable


def test_merging_reports_of_different_audits_is_refused(tmp_path, capsys):
    from test_report import sample_document

    from swiglu_audit.cli import main

    a, b = sample_document(), sample_document()
    b["config"] = dict(b["config"], seeds=[9])
    for name, doc in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(doc))
    assert main(["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "out")]) == 4
    assert "different configurations" in capsys.readouterr().err


def test_a_model_one_process_trained_and_another_read_from_the_cache_is_reported_as_trained():
    """Under xdist (and across shards) one process trains a model and another reads it from the
    cache for its checks: the merged report says it was trained in this audit, whatever the
    order the processes report in."""
    from swiglu_audit.report.writer import merged_models

    def listed(cached_seeds, seeds=(0, 1)):
        return {"relu-mlp": {"spec": {}, "n_parameters": 9, "runs": {"clean": [
            {"seed": s, "cached": s in cached_seeds, "train_seconds": 1.0 + s} for s in seeds]}}}

    trainer, reader = listed(cached_seeds=()), listed(cached_seeds=(0, 1))
    for order in ([trainer, reader], [reader, trainer]):
        runs = merged_models(order)["relu-mlp"]["runs"]["clean"]
        assert sorted((r["seed"], r["cached"]) for r in runs) == [(0, False), (1, False)]
    # seeds only one process saw are kept, each as that process saw it
    runs = merged_models([listed(cached_seeds=(0,), seeds=(0,)), listed(cached_seeds=(), seeds=(1,))])["relu-mlp"]["runs"]
    assert sorted((r["seed"], r["cached"]) for r in runs["clean"]) == [(0, True), (1, False)]


def _shard_doc(k, n, exit_status=0, findings=True):
    """A shard's report.json as the plugin writes it: K/N recorded, PASS findings only."""
    from test_report import sample_document

    doc = sample_document(exit_status)
    doc["findings"] = [dict(f, id=f"{f['id']}[shard{k}]") for f in doc["findings"] if f["status"] == "PASS"] if findings else []
    doc["summary"] = dict(doc["summary"], breaches_policy=False, verdict="PASS")
    if k is not None:
        doc["shard"] = {"index": k, "count": n, "narrowed": ""}
    return doc


def _merge(tmp_path, docs, capsys):
    from swiglu_audit.cli import main

    names = []
    for i, doc in enumerate(docs):
        (tmp_path / f"s{i}.json").write_text(json.dumps(doc))
        names.append(str(tmp_path / f"s{i}.json"))
    code = main(["merge", *names, "-o", str(tmp_path / "out")])
    return code, capsys.readouterr()


def test_merge_needs_every_shard_exactly_once(tmp_path, capsys):
    code, out = _merge(tmp_path, [_shard_doc(1, 2), _shard_doc(2, 2)], capsys)
    assert code == 0 and "partial" not in json.loads((tmp_path / "out" / "report.json").read_text())
    code, out = _merge(tmp_path, [_shard_doc(1, 2), _shard_doc(1, 2)], capsys)
    assert code == 4 and "shard 1/2 is given twice" in out.err
    code, out = _merge(tmp_path, [_shard_doc(1, 3), _shard_doc(3, 3)], capsys)
    assert code == 4 and "shard(s) 2/3 missing" in out.err
    code, out = _merge(tmp_path, [_shard_doc(1, 2), _shard_doc(2, 3)], capsys)
    assert code == 4 and "different numbers of shards" in out.err
    # the same older report (no K/N) twice is refused too; two different ones merge, with a note
    older = _shard_doc(None, None)
    code, out = _merge(tmp_path, [older, older], capsys)
    assert code == 4 and "the same report as" in out.err
    code, out = _merge(tmp_path, [older, _shard_doc(None, None, exit_status=1)], capsys)
    assert code == 0 and "do not say which shard K/N they are" in out.err


def test_an_interrupted_shard_makes_the_merge_partial_and_fail(tmp_path, capsys):
    code, out = _merge(tmp_path, [_shard_doc(1, 2), _shard_doc(2, 2, exit_status=2, findings=False)], capsys)
    merged = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code == 1 and "shard 2/2 ended with pytest exit status 2 (interrupted)" in merged["partial"]
    assert merged["summary"]["interrupted"] is True and "incomplete" in out.err
    narrowed = _shard_doc(2, 2)
    narrowed["shard"]["narrowed"] = "this run checks a part of the audit (3 check(s) deselected by keyword=ood)"
    code, _ = _merge(tmp_path, [_shard_doc(1, 2), narrowed], capsys)
    merged = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code == 0 and merged["partial"] == f"shard 2/2: {narrowed['shard']['narrowed']}"


def test_a_shard_records_which_it_is(tmp_path):
    from types import SimpleNamespace

    from swiglu_audit.config import build_config
    from swiglu_audit.report.writer import write_reports

    doc = _shard_doc(1, 3)
    collector = SimpleNamespace(findings=doc["findings"], plan=None, merged_meta=lambda: {})
    config = build_config(profile="quick", report_dir=str(tmp_path / "r"), project_root=tmp_path)
    _, written = write_reports(collector, config, 0, "12 check(s) deselected", (1, 3), "")
    assert written["shard"] == {"index": 2, "count": 3, "narrowed": ""}
    assert json.loads((tmp_path / "r" / "report.json").read_text())["shard"]["index"] == 2


def test_a_bad_shard_stops_the_run_before_the_preflight_and_writes_no_report(tiny_project):
    (tiny_project.path / "pyproject.toml").write_text(  # a dataset the preflight would refuse first
        (tiny_project.path / "pyproject.toml").read_text().replace("[tool.swiglu_audit]\n",
                                                                   "[tool.swiglu_audit]\ndataset = \"nosuchmodule:data\"\n", 1))
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", f"{OPT_SHARD}=4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "K between 1 and N" in result.stderr.str() and "nosuchmodule" not in result.stderr.str()
    assert not (tiny_project.path / "reports").exists()


def test_a_shard_says_what_narrowed_it_beyond_its_part(pytester):
    from swiglu_audit.pytest.plugin import suites_dir
    from swiglu_audit.pytest.relay import DESELECTED_KEY, SHARD_DESELECTED_KEY
    from swiglu_audit.pytest.warm import narrowed_by

    suites = str(suites_dir())
    shard_only = pytester.parseconfig(f"{OPT_SHARD}=1/2")
    shard_only.stash[DESELECTED_KEY] = shard_only.stash[SHARD_DESELECTED_KEY] = 10  # as the hooks count them
    assert "10 check(s) deselected" in narrowed_by(shard_only, suites)
    assert narrowed_by(shard_only, suites, beyond_shard=True) == ""
    with_k = pytester.parseconfig(f"{OPT_SHARD}=1/2", "-k", "ood")
    with_k.stash[DESELECTED_KEY], with_k.stash[SHARD_DESELECTED_KEY] = 13, 10
    beyond = narrowed_by(with_k, suites, beyond_shard=True)
    assert "(3 check(s) deselected by keyword=ood)" in beyond and "swiglu_audit_shard" not in beyond
