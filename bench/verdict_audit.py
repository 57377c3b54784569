"""Count the verdicts of a report.json that claim more than their interval shows.

A PASS must have its whole interval on the acceptable side of its tolerance, floor or ceiling
(DESIGN.md section 8). This reads each finding's rule from `details.judged` (written since the
non-inferiority step) or, for older reports, from its threshold sentence, and lists:
- PASS findings whose interval reaches past the limit (the count the step must bring to 0),
- FAIL findings whose interval reaches back to the acceptable side,
and, given a second report, how the statuses moved between the two (same finding ids).

    python bench/verdict_audit.py reports/report.json [--before old/report.json] [--out summary.json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

_NUMBER = r"([-+]?\d*\.?\d+(?:e[-+]?\d+)?)"


def rule_of(finding: dict) -> dict | None:
    """{"rule": "floor" | "ceiling" | "non_inferiority", "limit": number} or None (no limit)."""
    judged = (finding.get("details") or {}).get("judged")
    if judged:  # a decision table without one limit (the scan, the sanity checks) has no single rule
        return {"rule": judged["rule"], "limit": judged["limit"]} if "limit" in judged else None
    threshold = finding.get("threshold") or ""
    if threshold.startswith("candidate not worse"):  # reports before this step
        tolerance = float(re.search(rf"= {_NUMBER}", threshold).group(1))
        lower_is_worse = "(lower)" in threshold
        return {"rule": "non_inferiority", "limit": -tolerance if lower_is_worse else tolerance}
    if ";" in threshold or finding["check"] == "corruption_robustness":
        # two limits in one sentence, or (before this step) an interval of another quantity than
        # the one judged: no single rule to read
        return None
    m = re.match(rf".*? (>=|<=) \w+ = {_NUMBER}", threshold)
    if m:
        return {"rule": "floor" if m.group(1) == ">=" else "ceiling", "limit": float(m.group(2))}
    return None


def acceptable_side(rule: dict) -> str:
    """'above' when values at or above the limit are acceptable, else 'below'."""
    if rule["rule"] == "floor":
        return "above"
    if rule["rule"] == "ceiling":
        return "below"
    return "above" if rule["limit"] < 0 else "below"  # non-inferiority: -tol (higher better) or +tol


def overreach(finding: dict) -> str | None:
    """Why this finding's status claims more than its interval shows, or None."""
    rule = rule_of(finding)
    lo, hi = finding.get("ci_low"), finding.get("ci_high")
    if rule is None or lo is None or hi is None:
        return None
    limit, above = rule["limit"], acceptable_side(rule) == "above"
    if finding["status"] == "PASS" and (lo < limit if above else hi > limit):
        return f"PASS with interval [{lo:.4g}, {hi:.4g}] reaching past {limit:+g}"
    if finding["status"] == "FAIL" and (hi >= limit if above else lo <= limit):
        return f"FAIL with interval [{lo:.4g}, {hi:.4g}] reaching back to {limit:+g}"
    return None


def summarise(doc: dict) -> dict:
    findings = doc["findings"]
    judged = [f for f in findings if rule_of(f) and f.get("ci_low") is not None]
    over = [(f["id"], overreach(f)) for f in findings if overreach(f)]
    return {
        "findings": len(findings), "statuses": dict(Counter(f["status"] for f in findings)),
        "with_interval_and_limit": len(judged),
        "pass_with_interval_past_limit": sum(why.startswith("PASS") for _, why in over),
        "fail_with_interval_back_over_limit": sum(why.startswith("FAIL") for _, why in over),
        "overreaching": [{"id": i, "why": why} for i, why in over],
    }


def moves(before: dict, after: dict) -> dict:
    old = {f["id"]: f for f in before["findings"]}
    new = {f["id"]: f for f in after["findings"]}
    common = sorted(set(old) & set(new))
    moved = Counter(f"{old[i]['status']} -> {new[i]['status']}" for i in common if old[i]["status"] != new[i]["status"])
    by_suite = Counter(f"{new[i]['suite']}: {old[i]['status']} -> {new[i]['status']}" for i in common
                       if old[i]["status"] != new[i]["status"])
    return {"common_findings": len(common), "only_before": sorted(set(old) - set(new)),
            "only_after": sorted(set(new) - set(old)), "moved": dict(moved), "moved_by_suite": dict(sorted(by_suite.items())),
            "pass_before_overreaching_now_not_pass": sum(1 for i in common if old[i]["status"] == "PASS"
                                                          and overreach(old[i]) and new[i]["status"] != "PASS")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    p.add_argument("--before", type=Path, help="an earlier report.json of the same audit")
    p.add_argument("--out", type=Path)
    p.add_argument("--list", action="store_true", help="print every overreaching finding")
    args = p.parse_args(argv)
    after = json.loads(args.report.read_text())
    out = {"report": summarise(after)}
    if args.before:
        before = json.loads(args.before.read_text())
        out["before"] = summarise(before)
        out["moves"] = moves(before, after)
    for name in ("before", "report"):
        if name in out:
            s = out[name]
            print(f"{name}: {s['findings']} findings {s['statuses']}; PASS with interval past the limit: "
                  f"{s['pass_with_interval_past_limit']} of {s['with_interval_and_limit']} judged on an interval; "
                  f"FAIL reaching back: {s['fail_with_interval_back_over_limit']}")
            if args.list:
                for o in s["overreaching"]:
                    print(f"  {o['id']}: {o['why']}")
    if "moves" in out:
        print("moves:", json.dumps(out["moves"]["moved_by_suite"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
