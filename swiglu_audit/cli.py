"""`swiglu-audit` command: re-render or show saved reports without re-running the audit.

Exit status: 0 when all is well, 1 when a report breaches its policy or a gate trips (or a shard
is incomplete), 4 for a usage error (a file that is no report, a bad gate, a bad pyproject.toml),
as `pytest --swiglu-audit` does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import SwigluAuditError
from .util.io import atomic_write_text

USAGE_ERROR = 4  # as pytest's: 1 stays "the audit or its gate failed"


class UsageError(SwigluAuditError):
    """A command given something it cannot use; main() prints it and exits 4."""


def _load(path: str) -> dict:
    from .scheduled.history import report_problem

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    problem = report_problem(doc)
    if not problem and not (isinstance(doc.get("summary"), dict) and isinstance(doc["summary"].get("counts"), dict)
                            and "verdict" in doc["summary"] and "breaches_policy" in doc["summary"]):
        problem = "not a report: no summary with its verdict and counts"
    if problem.startswith("schema_version"):
        raise UsageError(f"{path} has {problem}")
    if problem:
        raise UsageError(f"{path}: {problem}; give a report.json that `pytest --swiglu-audit` wrote")
    return doc


def cmd_render(args) -> int:
    from .report.html import render_html

    doc = _load(args.report)
    out = Path(args.output) if args.output else Path(args.report).with_name("report.html")
    try:
        html = render_html(doc)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a part of the report missing or mangled
        raise UsageError(f"{args.report} is not a complete report ({type(exc).__name__}: {exc})") from None
    atomic_write_text(out, html)
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
        raise UsageError(f"no report at {path}; run `pytest --swiglu-audit` first")
    print(path)
    webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_list(args) -> int:
    for path in sorted(Path(args.folder).rglob("report.json")):
        try:
            s = json.loads(path.read_text())["summary"]
            print(f"{path}  {s['verdict']}")
        except (OSError, ValueError, KeyError, TypeError):
            print(f"{path}  (unreadable)")
    return 0


def _gates(args) -> dict:
    from .config import read_pyproject_table
    from .scheduled.regressions import Gate, parse_gates

    table = read_pyproject_table(Path(args.project)).get("gates", {}) if args.project else {}
    try:
        gates = parse_gates(table)
        for text in args.gate or []:
            name, sep, amount = text.partition("=")
            if not (sep and name.strip()):
                raise ValueError(f"--gate {text!r}: give CHECK=AMOUNT, e.g. default=0.02 or worst_case_robust_accuracy=5%")
            gates[name.strip()] = Gate.parse(amount, f"--gate {name.strip()}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return gates


def cmd_compare(args) -> int:
    from .scheduled.history import resolve_baseline
    from .scheduled.regressions import compare, render_comparison

    def report_of(ref: str) -> Path:
        try:
            path = resolve_baseline(ref, Path(args.history))
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        if path is None:
            raise UsageError(f"nothing saved in {args.history} yet")
        return path

    old_path, new_path = report_of(args.old), report_of(args.new)
    old, new, gates = _load(str(old_path)), _load(str(new_path)), _gates(args)
    try:
        result = compare(old, new, gates)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a part of a report mangled
        raise UsageError(f"{old_path} and {new_path} cannot be compared ({type(exc).__name__}: {exc})") from None
    for line in render_comparison(result, str(old_path), str(new_path)):
        print(line)
    return 1 if result.regressions else 0


def cmd_merge(args) -> int:
    from .report.writer import merge_documents, write_document

    documents = [_load(path) for path in args.reports]
    try:
        document = merge_documents(documents, list(args.reports))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (KeyError, TypeError, AttributeError) as exc:  # a part of a report missing or mangled
        raise UsageError(f"the shard reports cannot be merged ({type(exc).__name__}: {exc}); give the report.json "
                         "files `pytest --swiglu-audit --swiglu-audit-shard=K/N` wrote") from None
    paths = write_document(document, Path(args.output))
    s = document["summary"]
    print(f"merged {len(args.reports)} shard reports: {len(document['findings'])} findings, verdict {s['verdict']}")
    for note in document.get("merge_notes", []):
        print(f"note: {note}", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}: {path}")
    # a shard that did not run to its end (interrupted, a crash) leaves checks unrun: not a pass
    unfinished = [d["summary"].get("pytest_exit_status") for d in documents
                  if d["summary"].get("pytest_exit_status") not in (0, 1)]
    if unfinished:
        print(f"swiglu-audit: the merged report is incomplete: {document.get('partial')} (exit 1)", file=sys.stderr)
    return 1 if s["breaches_policy"] or unfinished else 0


def cmd_history(args) -> int:
    from .scheduled.history import accepted_baseline, anchor_run, saved_runs

    notes: list[str] = []
    runs = saved_runs(Path(args.history), notes)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if not runs:
        print(f"no saved audits in {args.history} (save one with pytest --swiglu-audit --swiglu-audit-save)")
    baseline, anchor = accepted_baseline(Path(args.history)), anchor_run(Path(args.history))
    for run in runs:
        marks = [m for m, on in (("BASELINE", baseline and run["id"] == baseline["id"]),
                                 ("ANCHOR", anchor and run["id"] == anchor["id"])) if on]
        gates = "gates passed" if run.get("gates_passed", True) else "gates TRIPPED"
        accepted = run.get("accepted")
        print(f"{run['id']}  {run.get('time')}  {run.get('verdict')}  {gates}  profile {run.get('profile')}  "
              f"commit {str(run.get('commit') or '-')[:10]}  config {run.get('config_digest')}"
              + (f"  {' '.join(marks)}" if marks else ""))
        if accepted:
            print(f"    accepted by {accepted.get('by', '?')} at {accepted.get('at', '?')}: {accepted.get('reason', '?')}")
    return 0


def cmd_accept(args) -> int:
    from .scheduled.history import accept_run

    try:
        record = accept_run(Path(args.history), args.run, args.reason, args.by)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
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
    try:
        return args.func(args)
    except SwigluAuditError as exc:  # ConfigError (a bad pyproject.toml) too: a message, not a traceback
        print(f"swiglu-audit: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
