"""The verdict table printed at the end of `pytest --swiglu-audit`."""

from __future__ import annotations

from ..verdicts.risk import STATUS_ORDER, error_groups, verdict

_MARKUP = {"PASS": {"green": True}, "WARN": {"yellow": True}, "FAIL": {"red": True, "bold": True},
           "ERROR": {"red": True, "bold": True}}


def _fmt(value) -> str:
    return "     -" if value is None else f"{value:+.3f}" if value < 0 else f"{value:6.3f}"


def summary_lines(findings: list[dict], config, paths: dict,
                  comparison: dict | None = None) -> list[tuple[str, dict]]:
    overall = verdict(findings, config.policy["fail_on_warn"])
    lines = [(f"verdict: {overall}   ({len(findings)} findings, profile {config.profile})",
              _MARKUP.get(overall, {"bold": True}))]
    groups = error_groups(findings)
    for g in groups:  # one line per model that could not be evaluated, not one per check
        lines.append((f"ERROR  {g['model']} could not be evaluated: {len(g['ids'])} checks, first "
                      f"error: {g['reason']}", _MARKUP["ERROR"]))
    grouped = {i for g in groups for i in g["ids"]}
    findings = [f for f in findings if f["id"] not in grouped]
    width = max((len(f["id"]) for f in findings), default=10)
    for f in sorted(findings, key=lambda f: (STATUS_ORDER.get(f["status"], 4), f["id"])):
        ci = (f"[{_fmt(f['ci_low'])}, {_fmt(f['ci_high'])}]" if f["ci_low"] is not None else "")
        lines.append((f"{f['status']:<5}  {f['id']:<{width}}  {_fmt(f['value'])} {ci}",
                      _MARKUP.get(f["status"], {})))
    if comparison is not None:
        lines += comparison_lines(comparison)
    for name, path in paths.items():
        lines.append((f"{name}: {path}", {}))
    return lines


def comparison_lines(comparison: dict) -> list[tuple[str, dict]]:
    """The comparison with the saved audit: setup differences, then each regression with the
    gate it tripped, then a count."""
    notes: list[tuple[str, dict]] = [(f"NOTE   {n}", {}) for n in comparison.get("history_notes", [])]
    if comparison.get("error"):  # the gate could not run: the run fails, and this says why and what to do
        notes.append((f"ERROR  compare: {comparison.get('note')} (exit 1)", _MARKUP["ERROR"]))
        if comparison.get("baseline") is None:
            return notes
    elif comparison.get("baseline") is None:
        return notes + [(f"compare: {comparison.get('note')}", {})]
    lines = [(f"compare with {comparison['baseline']}:", {"bold": True}), *notes]
    for diff in comparison.get("environment_differences", []):
        lines.append((f"WARN   setup differs: {diff}", _MARKUP["WARN"]))
    if comparison.get("partial"):
        missing = sum(1 for c in comparison.get("changes", []) if c["kind"] == "removed")
        lines.append((f"NOTE   {missing} finding(s) of the baseline not gated: {comparison['partial']}", {}))
    for change in comparison.get("changes", []):
        if change["regression"]:
            lines.append((f"REGRESSION  {change['id']}: {change['why']}", _MARKUP["FAIL"]))
    n_changed = len(comparison.get("changes", []))
    n = comparison.get("regressions", 0)
    failed = bool(n or comparison.get("error"))
    lines.append((f"{n_changed} finding(s) changed since the baseline, {n} regression(s)"
                  + ("; the gate could not run whole" if comparison.get("error") else "")
                  + (" (exit 1)" if failed else ""), _MARKUP["FAIL"] if failed else {}))
    return lines
