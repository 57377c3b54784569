"""The verdict table printed at the end of `pytest --swiglu-audit`."""

from __future__ import annotations

from ..risk import error_groups, verdict

_MARKUP = {"PASS": {"green": True}, "WARN": {"yellow": True}, "FAIL": {"red": True, "bold": True},
           "ERROR": {"red": True, "bold": True}}


def _fmt(value) -> str:
    return "     -" if value is None else f"{value:+.3f}" if value < 0 else f"{value:6.3f}"


def summary_lines(findings: list[dict], config, paths: dict) -> list[tuple[str, dict]]:
    overall = verdict((f["status"] for f in findings), config.policy["fail_on_warn"])
    lines = [(f"verdict: {overall}   ({len(findings)} findings, profile {config.profile})",
              _MARKUP.get(overall, {"bold": True}))]
    groups = error_groups(findings)
    for g in groups:  # one line per model that could not be evaluated, not one per check
        lines.append((f"ERROR  {g['model']} could not be evaluated: {len(g['ids'])} checks, first "
                      f"error: {g['reason']}", _MARKUP["ERROR"]))
    grouped = {i for g in groups for i in g["ids"]}
    findings = [f for f in findings if f["id"] not in grouped]
    width = max((len(f["id"]) for f in findings), default=10)
    order = {"ERROR": 0, "FAIL": 1, "WARN": 2, "PASS": 3}  # what needs attention first
    for f in sorted(findings, key=lambda f: (order.get(f["status"], 4), f["id"])):
        ci = (f"[{_fmt(f['ci_low'])}, {_fmt(f['ci_high'])}]" if f["ci_low"] is not None else "")
        lines.append((f"{f['status']:<5}  {f['id']:<{width}}  {_fmt(f['value'])} {ci}",
                      _MARKUP.get(f["status"], {})))
    for name, path in paths.items():
        lines.append((f"{name}: {path}", {}))
    return lines
