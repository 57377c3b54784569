"""The trigger-scan benchmark's table (kind x rate) from the JSON files of bench_trigger_scan.py.

    python bench/scan_table.py bench/trigger-scan-mlp.json

Medians over the cases of each row (a case without flags counts precision 0); "P&R" counts the
cases with precision and recall both at least 0.8; ART's two detectors are the reference columns.
The closing lines count all cases, and the cases whose model learned the backdoor (ASR >= 0.5).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def median(rows: list[dict], key: str, inner: str | None = None) -> float:
    values = [(r.get(key) or {}).get(inner) if inner else r.get(key) for r in rows]
    return float(np.median([v if v is not None else 0.0 for v in values]))


def good(rows: list[dict]) -> int:
    return sum((r["precision"] or 0) >= 0.8 and (r["recall"] or 0) >= 0.8 for r in rows)


def table(rows: list[dict]) -> list[str]:
    art = any("art_activation" in r for r in rows)
    lines = ["| kind | rate | cases | ASR | target named | precision | recall | AUROC | P&R >= 0.8 |"
             + (" ART AC P / R | ART SS P / R |" if art else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if art else "")]
    kinds = list(dict.fromkeys(r["kind"] for r in rows if r["kind"] != "none"))
    for kind in kinds:
        for rate in sorted({r["rate"] for r in rows if r["kind"] == kind}):
            g = [r for r in rows if r["kind"] == kind and r["rate"] == rate]
            line = (f"| {kind} | {rate:.0%} | {len(g)} | {median(g, 'asr'):.2f} | "
                    f"{sum(r['target_right'] for r in g)}/{len(g)} | {median(g, 'precision'):.2f} | "
                    f"{median(g, 'recall'):.2f} | {median(g, 'auroc'):.3f} | {good(g)}/{len(g)} |")
            if art:
                line += "".join(f" {median(g, a, 'precision'):.2f} / {median(g, a, 'recall'):.2f} |"
                                for a in ("art_activation", "art_spectral"))
            lines.append(line)
    return lines


def totals(rows: list[dict]) -> list[str]:
    out = []
    backdoored = [r for r in rows if r["kind"] != "none"]
    for label, pick in (("1%", lambda r: r["rate"] == 0.01), ("3-10%", lambda r: r["rate"] >= 0.03)):
        for what, g in (("all", [r for r in backdoored if pick(r)]),
                        ("learned", [r for r in backdoored if pick(r) and (r["asr"] or 0) >= 0.5])):
            if g:
                out.append(f"{label}, {what} ({len(g)} cases): target named {sum(r['target_right'] for r in g)}, "
                           f"precision >= 0.8 {sum((r['precision'] or 0) >= 0.8 for r in g)}, P&R >= 0.8 {good(g)}")
    clean = [r for r in rows if r["kind"] == "none"]
    out.append(f"clean models: {len(clean)}, a class named on {sum(r['found_target'] is not None for r in clean)}, "
               f"samples flagged {sum(r['n_flagged'] for r in clean)}")
    return out


def main() -> None:
    rows = [row for path in sys.argv[1:] for row in json.loads(open(path).read())["rows"]]
    print("\n".join(table(rows) + [""] + totals(rows)))


if __name__ == "__main__":
    main()
