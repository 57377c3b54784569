"""Saved audits and which of them is the baseline: the scheduled-CI half of the product.

A saved run is a folder `<history_dir>/<run id>/` holding `run.json` (id, time, git commit,
environment, config digest, whether it passed its gates) and the full `report.json`, and, once a
person accepts it, `accepted.json` (who, when, why). It is written to a temporary folder and
renamed into place, so a killed run leaves no half entry.

Which run is the baseline (`compare = "accepted"`, the default of the workflows): the last saved run
that passed its gates, or that a person accepted (`swiglu-audit accept RUN --reason ...`). A run
that tripped a gate is saved for the record but never becomes the baseline by itself. The
*anchor* for cumulative change is the last run a person accepted, else the first saved run; the
trend test reads the saved runs since it. What counts as a regression is regressions.py's.
Torch-free: the CLI and the plugin's controller use it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from ..util.io import atomic_write_text
from .regressions import config_digest

RUN_FILE = "run.json"
REPORT_FILE = "report.json"
# report.json's schema_version (report/writer.py takes it from here: a lower floor cannot import it)
REPORT_SCHEMA_VERSION = 1
# what compare, the trend and the CLI read of each finding
FINDING_FIELDS = {"id": str, "suite": str, "check": str, "status": str, "metric": str, "reason": str, "models": list}
ACCEPTED_FILE = "accepted.json"  # a person's acceptance of a run as a baseline: who, when, why
TREND_RUNS = 8  # saved runs (before this one) the trend test reads


def new_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    # microseconds: runs saved within one second still sort in the order they were saved, which
    # the accepted baseline and the trend test depend on
    return now.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + os.urandom(3).hex()


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
           "verdict": document["summary"]["verdict"],
           # a run that tripped a gate is kept for the record but never becomes a baseline by itself
           "gates_passed": gates_passed(document)}
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


def gates_passed(document: dict) -> bool:
    """Whether an audit may become the next baseline by itself: it ran the whole audit (not a
    part selected on purpose: `partial`), its comparison ran, found no regression, and lost no
    finding (a run that dropped a finding, or could not read its baseline, would let what it did
    not check through the next night). A first whole run, with nothing to compare with, passes:
    it is the first baseline."""
    if document.get("partial"):
        return False
    comparison = document.get("comparison")
    if not comparison:
        return True
    removed = any(c.get("kind") == "removed" for c in comparison.get("changes", []))
    return not comparison.get("regressions") and not comparison.get("error") and not removed


def report_problem(doc) -> str:
    """What keeps `doc` from being a report this version reads ("" when nothing does): an object
    of this schema_version with a list of findings, each with the fields compare reads."""
    if not isinstance(doc, dict):
        return f"not a report: a JSON {type(doc).__name__}, not an object"
    if doc.get("schema_version") != REPORT_SCHEMA_VERSION:
        return f"schema_version {doc.get('schema_version')!r}; this version reads {REPORT_SCHEMA_VERSION}"
    findings = doc.get("findings")
    if not isinstance(findings, list):
        return "not a report: no list of findings"
    for i, f in enumerate(findings):
        if not isinstance(f, dict):
            return f"finding {i + 1} is not an object"
        wrong = [k for k, kind in FINDING_FIELDS.items() if not isinstance(f.get(k), kind)]
        wrong += [k for k in ("value", "ci_low", "ci_high")
                  if f.get(k) is not None and (isinstance(f[k], bool) or not isinstance(f[k], (int, float)))]
        if not isinstance(f.get("details") or {}, dict):
            wrong.append("details")
        if wrong:
            return f"finding {f.get('id', i + 1)!r} lacks or mangles {', '.join(wrong)}"
    return ""


def read_report(path: Path) -> dict:
    """A saved report.json, checked (`report_problem`): OSError or ValueError naming what is wrong."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    problem = report_problem(doc)
    if problem:
        raise ValueError(problem)
    return doc


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None and text not in notes:
        notes.append(text)


def saved_runs(history_dir: Path, notes: list[str] | None = None) -> list[dict]:
    """The complete saved runs, oldest first (half-written ones are never listed), each with
    `accepted` (the acceptance record, or None). A damaged entry is skipped, and a damaged
    acceptance read as none; each said in `notes`, when given."""
    runs = []
    for folder in sorted(Path(history_dir).glob("*")) if Path(history_dir).is_dir() else []:
        if folder.name.startswith(".") or not (folder / RUN_FILE).is_file() or not (folder / REPORT_FILE).is_file():
            continue
        try:
            run = json.loads((folder / RUN_FILE).read_text())
        except (OSError, ValueError) as exc:
            run = f"it cannot be read ({exc})"
        if not isinstance(run, dict) or not isinstance(run.get("id"), str) or not run["id"]:
            why = run if isinstance(run, str) else "it is no saved run's record (no \"id\")"
            _note(notes, f"skipped the damaged history entry {folder}: its {RUN_FILE} {why.removeprefix('it ')}; "
                         "remove the entry")
            continue
        runs.append({**run, "path": str(folder), "accepted": _acceptance(folder, notes)})
    return sorted(runs, key=lambda r: r["id"])


def _acceptance(folder: Path, notes: list[str] | None) -> dict | None:
    """A run's acceptance record, or None. A damaged one keeps the run (it is still a saved
    audit) but accepts nothing, with a note: no one's acceptance is made up."""
    path = folder / ACCEPTED_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        record = exc
    if isinstance(record, dict) and record:
        return record
    _note(notes, f"{path} is damaged ({record if isinstance(record, Exception) else 'not an acceptance record'}); "
                 f"the run is kept as not accepted: accept it again with `swiglu-audit accept {folder.name} "
                 "--reason ...`")
    return None


def accept_run(history_dir: Path, run_id: str, reason: str, who: str | None = None) -> dict:
    """A person accepts a saved run as the baseline (a regression that is intended, or the new
    normal after a fix): recorded beside the run with who, when and why."""
    if not reason.strip():
        raise ValueError("say why the run is accepted (--reason): the history keeps it for the next reader")
    folder = Path(history_dir) / run_id
    if not (folder / RUN_FILE).is_file():
        known = ", ".join(r["id"] for r in saved_runs(history_dir)[-5:]) or "none"
        raise FileNotFoundError(f"no saved run {run_id!r} in {history_dir} (latest: {known}); "
                                "list them with `swiglu-audit history`")
    record = {"by": who or os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown",
              "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "reason": reason.strip()}
    atomic_write_text(folder / ACCEPTED_FILE, json.dumps(record, indent=1))
    return record


def accepted_baseline(history_dir: Path) -> dict | None:
    """The run `compare = "accepted"` compares with: the latest that passed its gates or that a
    person accepted."""
    eligible = [r for r in saved_runs(history_dir) if r.get("accepted") or r.get("gates_passed", True)]
    return eligible[-1] if eligible else None


def anchor_run(history_dir: Path) -> dict | None:
    """The run cumulative change is measured from: the latest a person accepted, else the first."""
    runs = saved_runs(history_dir)
    accepted = [r for r in runs if r.get("accepted")]
    return accepted[-1] if accepted else (runs[0] if runs else None)


def past_reports(history_dir: Path, last: int = TREND_RUNS, notes: list[str] | None = None) -> list[dict]:
    """The reports of the last saved runs, oldest first, for the trend test; none from before
    the last run a person accepted (what a person accepted is the new normal, not a decline).
    A damaged report is left out, said in `notes`."""
    runs = saved_runs(history_dir, notes)
    accepted = [i for i, r in enumerate(runs) if r.get("accepted")]
    return [doc for _, doc in _readable_reports(runs[accepted[-1] if accepted else 0:][-last:], notes)]


def _readable_reports(runs: list[dict], notes: list[str] | None) -> list[tuple[str, dict]]:
    out = []
    for run in runs:
        path = Path(run["path"]) / REPORT_FILE
        try:
            out.append((run["id"], read_report(path)))
        except (OSError, ValueError) as exc:
            _note(notes, f"left out the saved run {run['id']}: its {path} cannot be read ({exc})")
    return out


def trend(history_dir: Path, current: dict, checks: dict[str, tuple[str, str]], last: int = 20,
          notes: list[str] | None = None) -> dict:
    """The main per-model metric of each suite across the saved runs and this one, for the
    report's trend plots: {"runs": [time, ...], "run_ids": [id, ..., None for this run],
    "series": {suite: {model: [[run number, value], ...]}}}. `checks` maps a suite to (check, id
    suffix), e.g. ("worst_case_robust_accuracy", "[linf]"). A saved run in the plotted window
    whose report is damaged is left out of the plots and named in "notes" (and in `notes`, when
    given): a gap in the series is not read as a run that never was."""
    left_out: list[str] = []
    readable = _readable_reports(saved_runs(history_dir)[-(last - 1):], left_out)
    for note in left_out:
        _note(notes, note)
    ids: list[str | None] = [run_id for run_id, _ in readable]
    docs = [doc for _, doc in readable]
    docs.append(current)
    ids.append(None)
    series: dict[str, dict[str, list]] = {}
    for i, doc in enumerate(docs, start=1):
        for f in doc["findings"]:
            for suite, (check, suffix) in checks.items():
                if (f["suite"] == suite and f["check"] == check and len(f["models"]) == 1
                        and f["id"].endswith(f"]{suffix}") and f["value"] is not None):
                    series.setdefault(suite, {}).setdefault(f["models"][0], []).append([i, f["value"]])
    return {"runs": [d.get("generated_at") for d in docs], "run_ids": ids, "series": series, "notes": left_out}


def resolve_baseline(reference: str, history_dir: Path) -> Path | None:
    """`accepted`, `last`, a run id, or a path (a report.json or a folder holding one) -> that
    report.json; None for `accepted` or `last` with nothing saved yet."""
    if reference == "last":
        runs = saved_runs(history_dir)
        return Path(runs[-1]["path"]) / REPORT_FILE if runs else None
    if reference == "accepted":
        run = accepted_baseline(history_dir)
        return Path(run["path"]) / REPORT_FILE if run else None
    candidate = Path(history_dir) / reference
    for path in (candidate, Path(reference)):
        if path.is_dir() and (path / REPORT_FILE).is_file():
            return path / REPORT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"no saved run or report named {reference!r} (looked in {history_dir} and "
                            "the current folder); list the saved runs with `swiglu-audit history`")
