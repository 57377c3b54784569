"""`swiglu-audit` command: re-render or show saved reports without re-running the audit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report.writer import SCHEMA_VERSION
from .util.io import atomic_write_text


def _load(path: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"swiglu-audit: cannot read {path}: {exc}") from exc
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise SystemExit(f"swiglu-audit: {path} has schema_version {doc.get('schema_version')!r}; "
                         f"this version reads {SCHEMA_VERSION}")
    return doc


def cmd_render(args) -> int:
    from .report.html import render_html

    doc = _load(args.report)
    out = Path(args.output) if args.output else Path(args.report).with_name("report.html")
    atomic_write_text(out, render_html(doc))
    print(out)
    return 0


def cmd_show(args) -> int:
    doc = _load(args.report)
    s = doc["summary"]
    print(f"verdict: {s['verdict']}  " + "  ".join(f"{k} {v}" for k, v in s["counts"].items()))
    for f in doc["findings"]:
        value = "-" if f["value"] is None else f"{f['value']:.3f}"
        print(f"{f['status']:<5}  {f['id']}  {value}")
    return 1 if s["breaches_policy"] else 0


def cmd_open(args) -> int:
    import webbrowser

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.html"
    if not path.is_file():
        raise SystemExit(f"swiglu-audit: no report at {path}; run `pytest --swiglu-audit` first")
    print(path)
    webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_list(args) -> int:
    for path in sorted(Path(args.folder).rglob("report.json")):
        try:
            s = json.loads(path.read_text())["summary"]
            print(f"{path}  {s['verdict']}")
        except (OSError, ValueError, KeyError):
            print(f"{path}  (unreadable)")
    return 0


def _gates(args) -> dict:
    from .config import read_pyproject_table
    from .scheduled.regressions import Gate, parse_gates

    table = read_pyproject_table(Path(args.project)).get("gates", {}) if args.project else {}
    try:
        gates = parse_gates(table)
        for text in args.gate or []:
            name, _, amount = text.partition("=")
            gates[name.strip()] = Gate.parse(amount, f"--gate {name.strip()}")
    except ValueError as exc:
        raise SystemExit(f"swiglu-audit: {exc}") from exc
    return gates


def cmd_compare(args) -> int:
    from .scheduled.history import resolve_baseline
    from .scheduled.regressions import compare, render_comparison

    def report_of(ref: str) -> Path:
        try:
            path = resolve_baseline(ref, Path(args.history))
        except FileNotFoundError as exc:
            raise SystemExit(f"swiglu-audit: {exc}") from exc
        if path is None:
            raise SystemExit(f"swiglu-audit: nothing saved in {args.history} yet")
        return path

    old_path, new_path = report_of(args.old), report_of(args.new)
    result = compare(_load(str(old_path)), _load(str(new_path)), _gates(args))
    for line in render_comparison(result, str(old_path), str(new_path)):
        print(line)
    return 1 if result.regressions else 0


def cmd_merge(args) -> int:
    from .report.writer import merge_documents, write_document

    try:
        document = merge_documents([_load(path) for path in args.reports])
    except ValueError as exc:
        raise SystemExit(f"swiglu-audit: {exc}") from exc
    paths = write_document(document, Path(args.output))
    s = document["summary"]
    print(f"merged {len(args.reports)} shard reports: {len(document['findings'])} findings, verdict {s['verdict']}")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 1 if s["breaches_policy"] else 0


def cmd_history(args) -> int:
    from .scheduled.history import accepted_baseline, anchor_run, saved_runs

    runs = saved_runs(Path(args.history))
    if not runs:
        print(f"no saved audits in {args.history} (save one with pytest --swiglu-audit --swiglu-audit-save)")
    baseline, anchor = accepted_baseline(Path(args.history)), anchor_run(Path(args.history))
    for run in runs:
        marks = [m for m, on in (("BASELINE", baseline and run["id"] == baseline["id"]),
                                 ("ANCHOR", anchor and run["id"] == anchor["id"])) if on]
        gates = "gates passed" if run.get("gates_passed", True) else "gates TRIPPED"
        accepted = run.get("accepted")
        print(f"{run['id']}  {run.get('time')}  {run.get('verdict')}  {gates}  profile {run.get('profile')}  "
              f"commit {(run.get('commit') or '-')[:10]}  config {run.get('config_digest')}"
              + (f"  {' '.join(marks)}" if marks else ""))
        if accepted:
            print(f"    accepted by {accepted['by']} at {accepted['at']}: {accepted['reason']}")
    return 0


def cmd_accept(args) -> int:
    from .scheduled.history import accept_run

    try:
        record = accept_run(Path(args.history), args.run, args.reason, args.by)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"swiglu-audit: {exc}") from exc
    print(f"accepted {args.run} as the baseline (by {record['by']}: {record['reason']}); "
          "`compare = \"accepted\"` audits compare with it from now on")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swiglu-audit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="re-render report.html from a report.json")
    p.add_argument("report")
    p.add_argument("-o", "--output", help="HTML file to write (default: beside the JSON)")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("show", help="print a report's verdict and findings; exit 1 if it breaches its policy")
    p.add_argument("report")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("open", help="open a report.html (or a report folder) in the web browser")
    p.add_argument("report", nargs="?", default="reports")
    p.set_defaults(func=cmd_open)
    p = sub.add_parser("list", help="list saved reports under a folder")
    p.add_argument("folder", nargs="?", default="reports")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("compare", help="what changed between two audits; exit 1 when a gate trips")
    p.add_argument("old", help="a saved run id, `last`, a report.json or a folder holding one")
    p.add_argument("new", help="the same kinds of reference")
    p.add_argument("--history", default=".swiglu-audit-history", help="history folder (default: %(default)s)")
    p.add_argument("--project", default=".", help="folder whose pyproject.toml holds [tool.swiglu_audit.gates]")
    p.add_argument("--gate", action="append", metavar="CHECK=AMOUNT",
                   help="an allowed regression, e.g. worst_case_robust_accuracy=0.02 or default=5%%")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("merge", help="merge the report.json files of an audit's shards into one report")
    p.add_argument("reports", nargs="+", help="each shard's report.json")
    p.add_argument("-o", "--output", default="reports", help="folder for the merged reports (default: %(default)s)")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("history", help="list the saved audits, which passed their gates, which were accepted")
    p.add_argument("history", nargs="?", default=".swiglu-audit-history")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("accept", help="accept a saved run as the baseline (an intended change, or the new normal)")
    p.add_argument("run", help="the saved run's id (see `swiglu-audit history`)")
    p.add_argument("--reason", required=True, help="why: kept in the history beside the run")
    p.add_argument("--by", help="who accepts it (default: $GITHUB_ACTOR or $USER)")
    p.add_argument("--history", default=".swiglu-audit-history", help="history folder (default: %(default)s)")
    p.set_defaults(func=cmd_accept)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
