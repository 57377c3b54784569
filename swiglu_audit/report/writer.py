"""Build the report document from collected findings and write every report file atomically."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from .. import __version__
from ..config import AuditConfig
from ..errors import SwigluAuditWarning
from ..io import atomic_write_text
from ..risk import STATUS_ORDER, Status, breaches_policy, rmf_data, verdict

SCHEMA_VERSION = 1

# What the audit measures and what it does not (MEASURE 1.1 asks for both). An area counts as
# measured in a report only when a finding of its check (or of its suite) is in that report.
COVERAGE = [
    ("Evasion, white-box and black-box (attack ensemble, worst case)", "adversarial", "worst_case_robust_accuracy", ("MEASURE 2.7",)),
    ("Evasion, transfer between architectures", "adversarial", "transfer_attack_vs_baseline", ("MEASURE 2.7",)),
    ("Gradient-masking and evaluation sanity checks", "adversarial", "sanity_", ("MEASURE 2.13",)),
    ("Availability poisoning (random label flipping, several rates)", "poisoning", "label_flip_degradation", ("MEASURE 2.7", "MEASURE 2.1")),
    ("Targeted poisoning (class-pair label flipping)", "poisoning", "targeted_label_flip", ("MEASURE 2.7",)),
    ("Backdoor poisoning (BadNets patch trigger)", "poisoning", "backdoor_attack_success", ("MEASURE 2.7",)),
    ("Poisoned-sample detection (spectral signatures, activation clustering)", "poisoning", "poison_detection", ("MEASURE 2.7",)),
    ("Scan of the audited training set for poison", "poisoning", "training_set_scan", ("MEASURE 2.1", "MEASURE 2.7")),
    ("Data integrity (split leakage, duplicates, label errors)", "poisoning", "split_leakage", ("MEASURE 2.1",)),
    ("Near- and far-OOD detection (MSP, MaxLogit, Energy, ODIN, Mahalanobis, KNN)", "ood", "ood_detection", ("MEASURE 2.5", "MEASURE 2.6")),
    ("Selective prediction (risk-coverage)", "ood", "selective_prediction", ("MEASURE 2.6",)),
    ("Corruptions at five severities (8 types), mCE vs ReLU", "ood", "corruption_robustness", ("MEASURE 2.5",)),
    ("Calibration under shift (ECE)", "ood", "calibration_under_shift", ("MEASURE 2.5", "MEASURE 2.6")),
    ("SwiGLU op against a float64 reference", "numerical", "swiglu_op_property", ("MEASURE 2.5",)),
    ("Half-precision parity and overflow headroom", "numerical", "precision_parity", ("MEASURE 2.5", "MEASURE 2.6")),
    ("Determinism and golden outputs over time", "numerical", "golden_outputs", ("MEASURE 4.3",)),
    ("CPU vs accelerator parity", "numerical", "cpu_vs_accelerator", ("MEASURE 2.5",)),
    ("Efficiency claim (accuracy at matched parameters)", "efficiency", "clean_accuracy_vs_baseline", ("MAP 3.1", "MEASURE 2.3")),
    ("Privacy (membership inference, model inversion)", None, None, ("MEASURE 2.10",)),
    ("Fairness and harmful bias", None, None, ("MEASURE 2.11",)),
]


def coverage(findings: list[dict]) -> list[dict]:
    out = []
    for area, suite, check, rmf in COVERAGE:
        measured = any(f["suite"] == suite and f["check"].startswith(check) and f["status"] != "ERROR"
                       for f in findings) if suite else False
        note = ("" if measured else "not measured by this version of the harness" if suite is None
                else "not measured in this audit (suite not run, check skipped, or it errored)")
        out.append({"area": area, "suite": suite, "rmf": list(rmf), "measured": measured, "note": note})
    return out


def build_document(findings: list[dict], config: AuditConfig, meta: dict, exit_status: int) -> dict:
    ordered = sorted(findings, key=lambda f: (STATUS_ORDER.get(f["status"], 9), f["id"]))
    fail_on_warn = config.policy["fail_on_warn"]
    overall = verdict((f["status"] for f in ordered), fail_on_warn)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "swiglu-audit", "version": __version__},
        "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "summary": {
            "verdict": overall,
            "breaches_policy": any(breaches_policy(f["status"], fail_on_warn) for f in ordered),
            "interrupted": exit_status == 2,
            "pytest_exit_status": exit_status,
            "counts": {s.value: sum(f["status"] == s.value for f in ordered) for s in Status},
            "by_characteristic": _risk_by(ordered, lambda f: [f["characteristic"]]),
            "by_rmf_function": _risk_by(ordered, lambda f: sorted({r.split()[0] for r in f["rmf"]})),
        },
        "config": config.to_dict(),
        "policy": dict(config.policy),
        "environment": {**meta, "commit": _git_commit(config.project_root)},
        "coverage": coverage(ordered),
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


def render_all(document: dict) -> dict[str, str]:
    from .csv_report import render_csv
    from .html import render_html
    from .markdown import render_markdown
    from .oscal import render_oscal

    return {
        "report.json": json.dumps(document, indent=2, allow_nan=False),
        "report.html": render_html(document),
        "findings.csv": render_csv(document),
        "summary.md": render_markdown(document),
        "oscal-assessment-results.json": render_oscal(document),
    }


def write_document(document: dict, report_dir: Path) -> dict[str, str]:
    """Write all report files into report_dir; if that fails, into a fresh temporary folder, so
    that no finding is lost. Returns {file name: path written}."""
    files = render_all(document)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            atomic_write_text(report_dir / name, text)
        return {name: str(report_dir / name) for name in files}
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="swiglu-audit-report-"))
        warnings.warn(SwigluAuditWarning(f"could not write reports to {report_dir} ({exc}); they "
                                         f"were written to {fallback} instead"), stacklevel=2)
        for name, text in files.items():
            atomic_write_text(fallback / name, text)
        return {name: str(fallback / name) for name in files}


def write_reports(collector, config: AuditConfig, exit_status: int) -> tuple[dict[str, str], dict]:
    """Build the report document, compare it with a saved audit when asked, write every format,
    and save it to the history when asked. Returns (paths written, the document)."""
    document = build_document(collector.findings, config, collector.merged_meta(), exit_status)
    if config.compare_with:
        document["comparison"] = compare_with_saved(document, config)
    paths = write_document(document, config.report_dir)
    if config.save_run and exit_status != 2:  # an interrupted audit is no baseline for the next
        from ..history import save_run

        paths["saved run"] = str(save_run(config.history_dir, document))
    return paths, document


def compare_with_saved(document: dict, config: AuditConfig) -> dict:
    """The comparison block of report.json: against `config.compare_with`, gated."""
    from ..history import compare, parse_gates, resolve_baseline

    empty = {"regressions": 0, "changes": [], "environment_differences": []}
    try:
        baseline = resolve_baseline(config.compare_with or "last", config.history_dir)
    except FileNotFoundError as exc:
        return {"baseline": None, **empty, "note": str(exc)}
    if baseline is None:
        return {"baseline": None, **empty,
                "note": f"first run: nothing saved in {config.history_dir} to compare with, so no "
                        "gate can trip; save this run with --swiglu-audit-save"}
    try:
        old = json.loads(baseline.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"baseline": str(baseline), **empty, "note": f"the baseline {baseline} cannot be read ({exc})"}
    result = compare(old, document, parse_gates(config.gates))
    return {"baseline": str(baseline), "baseline_generated_at": old.get("generated_at"),
            "gates": dict(config.gates), **result.to_dict()}
