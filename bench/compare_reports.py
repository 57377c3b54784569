"""Findings of two audits compared check by check: the same ids, and for each its status, value and
interval (timings marked indicative: status only). Used to show that a warm audit (everything read
from the cache, judged in one process) finds what the cold audit that filled the cache found.

    python bench/compare_reports.py reports-cold/report.json reports-warm/report.json --out bench/warm-vs-cold.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def differences(first: list[dict], second: list[dict]) -> dict:
    a, b = {f["id"]: f for f in first}, {f["id"]: f for f in second}
    changed = []
    for key in sorted(set(a) & set(b)):
        fa, fb = a[key], b[key]
        fields = ("status",) if fa["details"].get("indicative") else ("status", "value", "ci")
        if any(fa.get(k) != fb.get(k) for k in fields):
            changed.append({"id": key, **{f"{k}": [fa.get(k), fb.get(k)] for k in fields}})
    return {"findings": [len(a), len(b)], "only_first": sorted(set(a) - set(b)),
            "only_second": sorted(set(b) - set(a)), "changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = differences(json.loads(args.first.read_text())["findings"], json.loads(args.second.read_text())["findings"])
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
