"""`swiglu-audit` command: re-render or show saved reports without re-running the audit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report.writer import SCHEMA_VERSION, atomic_write


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
    atomic_write(out, render_html(doc))
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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
