"""findings.csv: one row per finding, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io

COLUMNS = ("id", "status", "severity", "suite", "check", "models", "metric", "value", "ci_low",
           "ci_high", "ci_level", "threshold", "reason", "rmf", "characteristic", "attack_class")


def render_csv(document: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in document["findings"]:
        row = dict(f, models=";".join(f["models"]), rmf=";".join(f["rmf"]))
        writer.writerow(["" if row.get(c) is None else row[c] for c in COLUMNS])
    return buf.getvalue()
