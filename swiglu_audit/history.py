"""Saved audits, and what changed between two of them: the scheduled-CI half of the product.

A saved run is a folder `<history_dir>/<run id>/` holding `run.json` (id, time, git commit,
environment, config digest) and the full `report.json`. It is written to a temporary folder and
renamed into place, so a killed run leaves no half entry.

`compare(old, new, gates)` lines the two reports' findings up by id and says, for each: added,
removed, status changed, value changed. A change is a *regression* when it trips a gate:
- a status that gets worse (PASS -> WARN -> FAIL/ERROR) always does;
- a value that moves the wrong way (the check's condition says which way is better) by more than
  the gate allows (absolute, or relative with a trailing %), *and* beyond the noise: the two
  runs' confidence intervals do not overlap (runs without intervals are held to the gate alone).
Gates come from `[tool.swiglu_audit.gates]`: `check name = "0.02"` or `"5%"`, and `default`.
Findings marked indicative (`details.indicative`: wall-clock timings, which move with the machine's
load) are listed when they change but never gate: a scheduled audit must not fail on a busy runner.
Torch-free: the CLI and the plugin's controller use it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import atomic_write_text
from .risk import STATUS_ORDER

RUN_FILE = "run.json"
REPORT_FILE = "report.json"


# ----------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class Gate:
    """An allowed regression: `amount` in the value's own units, or a share of the old value."""

    amount: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str | float, where: str) -> Gate:
        raw = str(text).strip()
        try:
            if raw.endswith("%"):
                return cls(float(raw[:-1]) / 100.0, relative=True)
            return cls(float(raw))
        except ValueError:
            raise ValueError(f"{where} = {text!r}: give an allowed regression such as \"0.02\" "
                             "(absolute) or \"5%\" (relative)") from None

    def allows(self, worsening: float, old_value: float) -> bool:
        limit = self.amount * abs(old_value) if self.relative else self.amount
        return worsening <= limit + 1e-12

    def __str__(self) -> str:
        return f"{self.amount:.0%}" if self.relative else f"{self.amount:g}"


def parse_gates(table: dict) -> dict[str, Gate]:
    """`[tool.swiglu_audit.gates]` -> {check name or "default": Gate}."""
    return {str(k): Gate.parse(v, f"[tool.swiglu_audit.gates] {k}") for k, v in table.items()}


# ----------------------------------------------------------------------------- compare


@dataclass
class Change:
    id: str
    kind: str  # "added" | "removed" | "status" | "value" | "same"
    old_status: str | None
    new_status: str | None
    old_value: float | None
    new_value: float | None
    old_ci: tuple[float, float] | None
    new_ci: tuple[float, float] | None
    regression: bool = False
    why: str = ""  # for a regression: the gate it tripped and the numbers

    @property
    def delta(self) -> float | None:
        if self.old_value is None or self.new_value is None:
            return None
        return self.new_value - self.old_value


@dataclass
class Comparison:
    changes: list[Change]
    environment_differences: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    def to_dict(self) -> dict:
        return {"regressions": len(self.regressions), "environment_differences": self.environment_differences,
                "changes": [asdict(c) for c in self.changes if c.kind != "same"]}


def _ci(f: dict) -> tuple[float, float] | None:
    return None if f.get("ci_low") is None or f.get("ci_high") is None else (f["ci_low"], f["ci_high"])


def _indicative(f: dict | None) -> bool:
    return bool(f and (f.get("details") or {}).get("indicative"))


def _better(f: dict) -> str | None:
    return (f.get("details") or {}).get("better")


def _value_regression(old: dict, new: dict, gates: dict[str, Gate]) -> str:
    """Why the value change of one finding is a regression, or "" when it is not."""
    better = _better(new) or _better(old)
    if better not in ("higher", "lower") or old["value"] is None or new["value"] is None:
        return ""
    worsening = (old["value"] - new["value"]) if better == "higher" else (new["value"] - old["value"])
    gate = gates.get(new["check"]) or gates.get("default")
    if worsening <= 0 or gate is None or gate.allows(worsening, old["value"]):
        return ""
    old_ci, new_ci = _ci(old), _ci(new)
    if old_ci and new_ci and old_ci[0] <= new_ci[1] and new_ci[0] <= old_ci[1]:
        return ""  # the intervals overlap: within the noise of the two runs
    gate_name = new["check"] if new["check"] in gates else "default"
    return (f"{new['metric']} got worse ({better} is better) by {worsening:.4g}: {old['value']:.4g} -> "
            f"{new['value']:.4g}, beyond the gate {gate_name} = {gate}"
            + (f" and outside both intervals ({_fmt_ci(old_ci)} then {_fmt_ci(new_ci)})" if old_ci and new_ci else ""))


def _fmt_ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def compare(old_doc: dict, new_doc: dict, gates: dict[str, Gate] | None = None) -> Comparison:
    gates = gates or {}
    old = {f["id"]: f for f in old_doc["findings"]}
    new = {f["id"]: f for f in new_doc["findings"]}
    changes = []
    for fid in sorted(set(old) | set(new)):
        o, n = old.get(fid), new.get(fid)
        change = Change(fid, "same", o and o["status"], n and n["status"], o and o["value"], n and n["value"],
                        o and _ci(o), n and _ci(n))
        if o is None:
            change.kind = "added"
        elif n is None:
            change.kind = "removed"
        elif o["status"] != n["status"]:
            change.kind = "status"
            if STATUS_ORDER.get(n["status"], 9) < STATUS_ORDER.get(o["status"], 9):
                change.regression = True
                change.why = (f"status got worse: {o['status']} -> {n['status']} (gate: any worse status), "
                              f"{o['metric']} {_num(o['value'])} {_fmt_ci(_ci(o))} -> {_num(n['value'])} "
                              f"{_fmt_ci(_ci(n))}; now: {n['reason']}")
        elif o["value"] != n["value"]:
            change.kind = "value"
        if o is not None and n is not None and not change.regression:
            why = _value_regression(o, n, gates)
            change.regression, change.why = bool(why), why or change.why
        if change.regression and _indicative(n):
            change.regression, change.why = False, f"indicative (wall-clock), not gated: {change.why}"
        changes.append(change)
    return Comparison(changes, environment_differences(old_doc, new_doc))


def environment_differences(old_doc: dict, new_doc: dict) -> list[str]:
    """What differs between the two runs' setups: versions, device, data, configuration."""
    diffs = []
    old_env, new_env = old_doc.get("environment") or {}, new_doc.get("environment") or {}
    for section in ("versions", "device"):
        a, b = old_env.get(section) or {}, new_env.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and key not in ("torch_threads",):
                diffs.append(f"{section}.{key}: {a.get(key)} -> {b.get(key)}")
    old_data, new_data = (old_env.get("data") or {}).get("sha256"), (new_env.get("data") or {}).get("sha256")
    if old_data != new_data:
        diffs.append("data: the splits' sha256 differ")
    if config_digest(old_doc) != config_digest(new_doc):
        a, b = _comparable_config(old_doc), _comparable_config(new_doc)
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        diffs.append("configuration differs in " + ", ".join(keys))
    return diffs


def _comparable_config(doc: dict) -> dict:
    """The settings that decide what is measured (not where reports go, nor the gates)."""
    return {k: v for k, v in (doc.get("config") or {}).items() if k not in ("report_dir", "update_golden", "gates")}


def config_digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(_comparable_config(doc), sort_keys=True).encode()).hexdigest()[:16]


def render_comparison(result: Comparison, old_name: str, new_name: str) -> list[str]:
    """The comparison as text lines: what a CI log shows."""
    lines = [f"swiglu-audit compare: {old_name} -> {new_name}"]
    if result.environment_differences:
        lines.append("WARN  the runs differ in their setup, so some changes may come from it:")
        lines += [f"        {d}" for d in result.environment_differences]
    changed = [c for c in result.changes if c.kind != "same"]
    for c in sorted(changed, key=lambda c: (not c.regression, c.id)):
        tag = "REGRESSION" if c.regression else c.kind
        if c.kind == "added":
            text = f"added ({c.new_status}, {_num(c.new_value)})"
        elif c.kind == "removed":
            text = f"removed (was {c.old_status}, {_num(c.old_value)})"
        else:
            delta = "" if c.delta is None else f" ({c.delta:+.4g})"
            text = (f"{c.old_status} -> {c.new_status}, {_num(c.old_value)} {_fmt_ci(c.old_ci)} -> "
                    f"{_num(c.new_value)} {_fmt_ci(c.new_ci)}{delta}")
        lines.append(f"{tag:<10}  {c.id}: {text}")
        if c.regression:
            lines.append(f"            {c.why}")
    n = len(result.regressions)
    lines.append(f"{len(changed)} finding(s) changed, {n} regression(s)"
                 + ("" if n else "; no gate tripped"))
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


# ----------------------------------------------------------------------------- saved runs


def new_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


def save_run(history_dir: Path, document: dict) -> Path:
    """Save one audit atomically: a temporary folder, renamed into place when complete."""
    history_dir = Path(history_dir)
    history_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    env = document.get("environment") or {}
    run = {"id": run_id, "time": document.get("generated_at"), "commit": env.get("commit"),
           "environment": {"device": env.get("device"), "versions": env.get("versions"),
                           "platform": platform.platform()},
           "config_digest": config_digest(document), "profile": (document.get("config") or {}).get("profile"),
           "verdict": document["summary"]["verdict"]}
    staging = Path(tempfile.mkdtemp(dir=history_dir, prefix=".tmp-run-"))
    try:
        atomic_write_text(staging / REPORT_FILE, json.dumps(document, indent=1))
        atomic_write_text(staging / RUN_FILE, json.dumps(run, indent=1))
        target = history_dir / run_id
        os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def saved_runs(history_dir: Path) -> list[dict]:
    """The complete saved runs, oldest first (half-written ones are never listed)."""
    runs = []
    for folder in sorted(Path(history_dir).glob("*")) if Path(history_dir).is_dir() else []:
        if folder.name.startswith(".") or not (folder / RUN_FILE).is_file() or not (folder / REPORT_FILE).is_file():
            continue
        try:
            runs.append({**json.loads((folder / RUN_FILE).read_text()), "path": str(folder)})
        except (OSError, ValueError):
            continue
    return sorted(runs, key=lambda r: r["id"])


def trend(history_dir: Path, current: dict, checks: dict[str, tuple[str, str]], last: int = 20) -> dict:
    """The main per-model metric of each suite across the saved runs and this one, for the
    report's trend plots: {"runs": [time, ...], "series": {suite: {model: [[run number, value], ...]}}}.
    `checks` maps a suite to (check, id suffix), e.g. ("worst_case_robust_accuracy", "[linf]")."""
    docs = []
    for run in saved_runs(history_dir)[-(last - 1):]:
        try:
            docs.append(json.loads((Path(run["path"]) / REPORT_FILE).read_text()))
        except (OSError, ValueError):
            continue
    docs.append(current)
    series: dict[str, dict[str, list]] = {}
    for i, doc in enumerate(docs, start=1):
        for f in doc["findings"]:
            for suite, (check, suffix) in checks.items():
                if (f["suite"] == suite and f["check"] == check and len(f["models"]) == 1
                        and f["id"].endswith(f"]{suffix}") and f["value"] is not None):
                    series.setdefault(suite, {}).setdefault(f["models"][0], []).append([i, f["value"]])
    return {"runs": [d.get("generated_at") for d in docs], "series": series}


def resolve_baseline(reference: str, history_dir: Path) -> Path | None:
    """`last`, a run id, or a path (a report.json or a folder holding one) -> that report.json;
    None for `last` with nothing saved yet."""
    if reference == "last":
        runs = saved_runs(history_dir)
        return Path(runs[-1]["path"]) / REPORT_FILE if runs else None
    candidate = Path(history_dir) / reference
    for path in (candidate, Path(reference)):
        if path.is_dir() and (path / REPORT_FILE).is_file():
            return path / REPORT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"no saved run or report named {reference!r} (looked in {history_dir} and "
                            "the current folder); list the saved runs with `swiglu-audit history`")
