"""Build the report document from collected findings and write every report file atomically."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from .. import __version__
from ..checks.suite_catalog import NOT_MEASURED, SUITES
from ..config import AuditConfig
from ..errors import SwigluAuditWarning
from ..scheduled.history import REPORT_SCHEMA_VERSION as SCHEMA_VERSION
from ..util.io import atomic_write_text
from ..verdicts.risk import STATUS_ORDER, Status, breaches_policy, is_indicative, json_safe, rmf_data, verdict

USAGE_ERROR = 4  # pytest's exit status for a usage error: no report is written over the last run's

def coverage(findings: list[dict], modality: str = "image") -> list[dict]:
    """The coverage matrix (MEASURE 1.1): every suite's areas, and what no suite measures. An area
    counts as measured in a report only when a finding of its check is in it (and not an ERROR);
    an area meant for another kind of data is "not applicable", which is not "not measured"."""
    rows = [(row, name) for name, info in SUITES.items() for row in info.coverage] + [(r, None) for r in NOT_MEASURED]
    out = []
    for row, suite in rows:
        area, check, rmf = row.area, row.check or "", row.rmf
        applicable = modality in row.modalities
        measured = applicable and suite is not None and any(
            f["suite"] == suite and f["check"].startswith(check) and f["status"] != "ERROR" for f in findings)
        note = ("" if measured else
                f"not applicable to {'(N, D)' if modality == 'tabular' else 'image'} data" if not applicable else
                "not measured by this version of the harness" if suite is None
                else f"needs user input: {row.needs}" if row.needs
                else "not measured in this audit (suite not run, check skipped, or it errored)")
        out.append({"area": area, "suite": suite, "rmf": list(rmf), "measured": measured,
                    "applicable": applicable, "note": note})
    return out


def order_findings(findings: list[dict]) -> list[dict]:
    return sorted(findings, key=lambda f: (STATUS_ORDER.get(f["status"], 9), f["id"]))


def summarise(ordered: list[dict], fail_on_warn: bool, exit_status: int) -> dict:
    """The summary block of a report: verdict, policy breach, counts and risk tables."""
    return {
        "verdict": verdict(ordered, fail_on_warn),
        "breaches_policy": any(breaches_policy(f["status"], fail_on_warn, is_indicative(f)) for f in ordered),
        "interrupted": exit_status == 2,
        "pytest_exit_status": exit_status,
        "counts": {s.value: sum(f["status"] == s.value for f in ordered) for s in Status},
        "by_characteristic": _risk_by(ordered, lambda f: [f["characteristic"]]),
        "by_rmf_function": _risk_by(ordered, lambda f: sorted({r.split()[0] for r in f["rmf"]})),
        **({"auto_seeds": auto} if (auto := auto_seeds_summary(ordered)) else {}),
    }


def auto_seeds_summary(findings: list[dict]) -> dict | None:
    """With seeds = "auto": how many comparisons were decided at the configured seeds, how many
    only with more, how many stayed open, and the seconds the extra looks cost (None without)."""
    runs = [f["details"]["sequential"] for f in findings if (f.get("details") or {}).get("sequential")]
    if not runs:
        return None
    return {
        "comparisons": len(runs),
        "decided_at_configured_seeds": sum(r["decided"] and len(r["history"]) == 1 for r in runs),
        "decided_with_more_seeds": sum(r["decided"] and len(r["history"]) > 1 for r in runs),
        "still_open": sum(not r["decided"] for r in runs),
        "extra_seconds": round(sum(r["extra_seconds"] for r in runs), 1),
        "most_seeds_used": max(r["seeds_used"] for r in runs),
    }


def build_document(findings: list[dict], config: AuditConfig, meta: dict, exit_status: int) -> dict:
    ordered = order_findings(findings)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "swiglu-audit", "version": __version__},
        "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "summary": summarise(ordered, config.policy["fail_on_warn"], exit_status),
        "config": config.to_dict(),
        "policy": dict(config.policy),
        "environment": {**meta, "commit": _git_commit(config.project_root)},
        "coverage": coverage(ordered, (meta.get("data") or {}).get("modality", "image")),
        "rmf": {"subcategories": rmf_data()["subcategories"],
                "characteristics": rmf_data()["characteristics"],
                "attack_classes": rmf_data()["attack_classes"]},
        "findings": ordered,
    }


def _risk_by(findings: list[dict], keys) -> dict:
    out: dict[str, Counter] = {}
    for f in findings:
        for k in keys(f):
            out.setdefault(k, Counter())[f["status"]] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def merged_models(model_lists: list[dict]) -> dict:
    """The models of several processes' (or shards') reports as one: per model, tag and seed, a
    run that trained the model wins over one that read it from the cache (under xdist one worker
    trains a model and another reads it for its checks: the model was trained in this audit)."""
    models: dict = {}
    for listed in model_lists:
        for name, entry in listed.items():
            target = models.setdefault(name, {**entry, "runs": {}})
            for tag, runs in (entry.get("runs") or {}).items():
                by_seed = {run["seed"]: run for run in target["runs"].get(tag, [])}
                for run in runs:
                    if run["seed"] not in by_seed or (by_seed[run["seed"]]["cached"] and not run["cached"]):
                        by_seed[run["seed"]] = run
                target["runs"][tag] = list(by_seed.values())
    return dict(sorted(models.items()))


def merge_documents(documents: list[dict], names: list[str] | None = None) -> dict:
    """One report from the reports of the shards of one audit (`swiglu-audit merge`): the union
    of their findings, the summary and coverage recomputed, the environments' model facts and
    cache counts combined. The shards must share a configuration, and each of shards 1..N must
    be there once (else ValueError). `partial` says why the merged report is not the whole audit
    (a shard interrupted, or narrowed beyond its part); `merge_notes` what could not be checked."""
    from ..scheduled.regressions import config_digest

    if not documents:
        raise ValueError("no shard reports to merge")
    names = names or [f"report {i}" for i in range(1, len(documents) + 1)]
    digests = {config_digest(d) for d in documents}
    if len(digests) > 1:
        raise ValueError("the shard reports come from different configurations; merge only the shards of one audit")
    partial, notes = _shard_coverage(documents, names)
    by_id: dict[str, dict] = {}
    for doc in documents:
        for f in doc["findings"]:
            if f["id"] in by_id and by_id[f["id"]] != f:
                raise ValueError(f"finding {f['id']} differs between shards; were they run on the same data and cache?")
            by_id[f["id"]] = f
    # a shard's own comparison, trend, `partial` and number speak of that shard, not of the merged audit
    base = {k: v for k, v in documents[0].items() if k not in ("partial", "comparison", "trend", "shard")}
    ordered = order_findings(list(by_id.values()))
    exit_status = max(d["summary"]["pytest_exit_status"] for d in documents)
    environment = dict(base["environment"])
    environment["models"] = merged_models([doc["environment"].get("models") or {} for doc in documents])
    caches = [d["environment"].get("cache") or {} for d in documents]
    environment["cache"] = {**caches[0], **{k: sum(c.get(k, 0) for c in caches)
                                           for k in ("hits", "misses", "result_hits", "result_misses", "fetched")}}
    environment["shards"] = len(documents)
    return {**base, "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "summary": summarise(ordered, bool(base["policy"].get("fail_on_warn")), exit_status),
            "environment": environment,
            "coverage": coverage(ordered, (environment.get("data") or {}).get("modality", "image")), "findings": ordered,
            **({"partial": partial} if partial else {}), **({"merge_notes": notes} if notes else {})}


def _shard_coverage(documents: list[dict], names: list[str]) -> tuple[str, list[str]]:
    """(why the shards are not the whole audit, or ""; notes). ValueError when a shard is missing or
    given twice: a merged report must not pass for the whole audit without the checks of one."""
    shards: list = [d.get("shard") for d in documents]
    notes: list[str] = []
    if all(s is None for s in shards):  # written before reports said which shard they are
        notes.append(f"{len(documents)} report(s) do not say which shard K/N they are (written by an older "
                     "swiglu-audit): the merge cannot check that every shard is here once")
        seen: dict[str, str] = {}
        for name, doc in zip(names, documents):
            key = json.dumps(doc, sort_keys=True, default=str)
            if key in seen:
                raise ValueError(f"{name} is the same report as {seen[key]}; give each shard's report.json once")
            seen[key] = name
    else:
        bad = [n for n, s in zip(names, shards) if not (isinstance(s, dict) and isinstance(s.get("index"), int)
                                                      and isinstance(s.get("count"), int) and 1 <= s["index"] <= s["count"])]
        if bad:
            raise ValueError(f"{', '.join(bad)} do not say which shard K/N they are, and the others do; merge the "
                             "reports of one run of the sharded audit")
        counts = sorted({s["count"] for s in shards})
        if len(counts) > 1:
            raise ValueError(f"the shard reports split the audit into different numbers of shards ({counts}); "
                             "merge the shards of one run")
        count = counts[0]
        by_index: dict[int, str] = {}  # shard -> the report that is it
        for name, s in zip(names, shards):
            if s["index"] in by_index:
                raise ValueError(f"shard {s['index']}/{count} is given twice ({by_index[s['index']]} and {name}); "
                                 "give each shard's report.json once")
            by_index[s["index"]] = name
        missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in by_index]
        if missing:
            raise ValueError(f"shard(s) {', '.join(missing)} missing: the merged report would lack their checks; "
                             f"merge the report.json of each of the {count} shards")
    reasons = []
    for name, doc, s in zip(names, documents, shards):
        label = f"shard {s['index']}/{s['count']}" if s else name
        status = doc["summary"].get("pytest_exit_status")
        if status not in (0, 1):
            reasons.append(f"{label} ended with pytest exit status {status}"
                           + (" (interrupted)" if status == 2 else "") + ": the checks it did not run are missing")
        elif s and s.get("narrowed"):
            reasons.append(f"{label}: {s['narrowed']}")
    return "; ".join(reasons), notes


REPORT_FILES = {"report.json", "report.html", "findings.csv", "summary.md", "oscal-assessment-results.json"}


def render_all(document: dict) -> dict[str, str]:
    """Every format's text. A format whose renderer fails is left out, with a warning naming it,
    so that one renderer's bug never costs the others (report.json, rendered first, is the record)."""
    from .csv_report import render_csv
    from .html import render_html
    from .markdown import render_markdown
    from .oscal import render_oscal

    renderers = {
        "report.json": lambda doc: json.dumps(doc, indent=2, allow_nan=False),
        "report.html": render_html,
        "findings.csv": render_csv,
        "summary.md": render_markdown,
        "oscal-assessment-results.json": render_oscal,
    }
    files = {}
    for name, render in renderers.items():
        try:
            files[name] = render(document)
        except Exception as exc:  # noqa: BLE001  # the other formats are still written
            warnings.warn(SwigluAuditWarning(f"could not render {name} ({type(exc).__name__}: {exc}); the other "
                                             "report files were written"), stacklevel=2)
    return files


def write_document(document: dict, report_dir: Path) -> dict[str, str]:
    """Write all report files into report_dir; if that fails, into a fresh temporary folder, so
    that no finding is lost. A format that cannot be rendered is not written, and its file from an
    earlier run is removed, so that no stale report sits beside this run's. Returns {file name:
    path written}."""
    files = render_all(json_safe(document))  # a baseline's NaN or a lone surrogate costs no file
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            atomic_write_text(report_dir / name, text)
        for name in REPORT_FILES - files.keys():
            (report_dir / name).unlink(missing_ok=True)
        return {name: str(report_dir / name) for name in files}
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="swiglu-audit-report-"))
        warnings.warn(SwigluAuditWarning(f"could not write reports to {report_dir} ({exc}); they "
                                         f"were written to {fallback} instead"), stacklevel=2)
        for name, text in files.items():
            atomic_write_text(fallback / name, text)
        return {name: str(fallback / name) for name in files}


def write_reports(collector, config: AuditConfig, exit_status: int, partial: str = "",
                  shard: tuple[int, int] | None = None, shard_narrowed: str = "") -> tuple[dict[str, str], dict]:
    """Build the report document, compare it with a saved audit when asked, write every format,
    and save it to the history when asked. Returns (paths written, the document). `partial`: why
    this run checked a part of the audit on purpose, if it did (`compare`'s); `shard`: (index from
    0, count) of a sharded run, and `shard_narrowed` what it left out beyond its shard. On a usage
    error nothing is written or saved."""
    document = build_document(collector.findings, config, collector.merged_meta(), exit_status)
    if shard is not None:  # which part of the audit: `merge` checks that every part is there once
        document["shard"] = {"index": shard[0] + 1, "count": shard[1], "narrowed": shard_narrowed}
    if exit_status == USAGE_ERROR:  # the audit never ran: the last run's reports and history stay as they were
        return {}, document
    if getattr(collector, "plan", None):  # the estimate beside what the audit took: the plan's accuracy
        plan = dict(collector.plan)
        plan["actual_seconds"] = round(time.time() - plan.pop("started"), 1)
        document["plan"] = plan
        document["coverage"] += [{"area": f"Cut to fit max_minutes = {plan['max_minutes']:g}: {cut}", "suite": None,
                                  "rmf": ["MEASURE 1.1"], "measured": False, "applicable": True,
                                  "note": "not measured: the time budget cut it"} for cut in plan.get("cuts", [])]
    if partial:  # a part of the audit: saved for the record, but no baseline by itself (history.gates_passed)
        document["partial"] = partial
    if config.compare_with:
        document["comparison"] = compare_with_saved(document, config, partial)
    if config.compare_with or config.save_run:
        from ..scheduled.history import trend

        checks = {name: (info.trend_check, info.trend or "") for name, info in SUITES.items() if info.trend_check}
        try:
            document["trend"] = trend(config.history_dir, document, checks)
        except Exception as exc:  # noqa: BLE001  # the trend plots are not worth the report
            warnings.warn(SwigluAuditWarning(f"no trend plots: the history in {config.history_dir} could not be "
                                             f"read ({type(exc).__name__}: {exc})"), stacklevel=2)
    paths = write_document(document, config.report_dir)
    # only an audit that ran to its end is saved: an interrupted one, or one that collected
    # nothing, is no baseline for the next
    if config.save_run and exit_status in (0, 1):
        from ..scheduled.history import save_run

        paths["saved run"] = str(save_run(config.history_dir, document))
    return paths, document


def compare_with_saved(document: dict, config: AuditConfig, partial: str = "") -> dict:
    """The comparison block of report.json: against `config.compare_with`, gated. A baseline (or
    an anchor) that cannot be found or read, or a comparison that fails, is an `error`, which
    breaches the policy: a gate that could not run has not passed. It never costs the report."""
    notes: list[str] = []  # damaged history entries, skipped
    try:
        comparison = _compare_with_saved(document, config, partial, notes)
    except Exception as exc:  # noqa: BLE001
        comparison = _gate_error(None, f"the comparison failed ({type(exc).__name__}: {exc})", config)
    if notes:
        comparison["history_notes"] = notes
    return comparison


def _gate_error(baseline, problem: str, config: AuditConfig, result: dict | None = None) -> dict:
    empty = {"regressions": 0, "changes": [], "environment_differences": []}
    return {"baseline": baseline, **(result or empty), "error": True,
            "note": f"the gate could not run, so this audit fails it: {problem}. Fix: accept a good run as the "
                    "baseline with `swiglu-audit accept RUN-ID --reason ...` (`swiglu-audit history` lists them), "
                    f"or remove the damaged entry from {config.history_dir}"}


def _compare_with_saved(document: dict, config: AuditConfig, partial: str, notes: list[str]) -> dict:
    from ..scheduled.history import REPORT_FILE, anchor_run, past_reports, read_report, resolve_baseline, saved_runs
    from ..scheduled.regressions import compare, parse_gates

    saved_runs(config.history_dir, notes)  # what is damaged in the history, said once
    try:
        baseline = resolve_baseline(config.compare_with or "accepted", config.history_dir)
    except FileNotFoundError as exc:
        return _gate_error(None, str(exc), config)
    if baseline is None:
        return {"baseline": None, "regressions": 0, "changes": [], "environment_differences": [],
                "note": f"first run: nothing saved in {config.history_dir} to compare with, so no "
                        "gate can trip; save this run with --swiglu-audit-save"}
    try:
        old = read_report(baseline)
    except (OSError, ValueError) as exc:
        return _gate_error(str(baseline), f"the baseline {baseline} cannot be read ({exc})", config)
    anchor = anchor_run(config.history_dir) if config.compare_with == "accepted" else None
    anchor_doc, anchor_problem = None, ""
    if anchor is not None and Path(anchor["path"]) != baseline.parent:
        try:
            anchor_doc = read_report(Path(anchor["path"]) / REPORT_FILE)
        except (OSError, ValueError) as exc:  # the cumulative (slow-drift) gate cannot run: said, and failed
            anchor_problem = (f"the anchor run {anchor['id']} cannot be read ({exc}), so the cumulative check "
                              "since it did not run")
    result = compare(old, document, parse_gates(config.gates), anchor_doc,
                     past_reports(config.history_dir, notes=notes), partial)
    out = {"baseline": str(baseline), "baseline_generated_at": old.get("generated_at"),
           "anchor": anchor["id"] if anchor is not None and anchor_doc is not None else None,
           "gates": dict(config.gates), **({"partial": partial} if partial else {}), **result.to_dict()}
    if anchor_problem:
        return _gate_error(str(baseline), anchor_problem, config, out)
    return out
