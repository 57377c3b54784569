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


def test_merging_reports_of_different_audits_is_refused(tmp_path):
    from test_report import sample_document

    from swiglu_audit.cli import main

    a, b = sample_document(), sample_document()
    b["config"] = dict(b["config"], seeds=[9])
    for name, doc in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="different configurations"):
        main(["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "out")])


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
