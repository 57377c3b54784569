"""Did a refactoring keep the audit's behaviour? Compare two report.json files finding by finding.

    python bench/behaviour_check.py BEFORE/report.json AFTER/report.json

Counted: finding ids present in one report only, and for shared ids any difference in status,
value or interval (exact comparison), then any difference in the sentence (reason), threshold
or title, which a refactoring may change on purpose; those are listed so that each can be
explained. Wall-clock findings (details "indicative": timings, never above WARN) differ from run
to run whatever the code, value and status alike (two runs of one commit flip several between
PASS and WARN), so they are counted apart and do not fail the check. Exit status 1 when an id, or
the status, value or interval of any other finding, differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _findings(path: Path) -> dict[str, dict]:
    return {f["id"]: f for f in json.loads(path.read_text())["findings"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    old, new = _findings(args.before), _findings(args.after)
    only_old, only_new = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    numbers, words, timings = [], {}, []
    for fid in sorted(set(old) & set(new)):
        o, n = old[fid], new[fid]
        indicative = bool((o.get("details") or {}).get("indicative"))
        if indicative:
            if o.get("value") != n.get("value") or o.get("status") != n.get("status"):
                timings.append((fid, o.get("status"), n.get("status")))
            continue
        for key in ("status", "value", "ci_low", "ci_high"):
            if o.get(key) != n.get(key):
                numbers.append(f"{fid}: {key} {o.get(key)!r} -> {n.get(key)!r}")
        for key in ("reason", "threshold", "title"):
            if o.get(key) != n.get(key):
                words.setdefault(key, []).append(fid)
    print(f"{args.before} -> {args.after}")
    print(f"{len(old)} and {len(new)} findings; only before: {len(only_old)}, only after: {len(only_new)}")
    for fid in only_old + only_new:
        print(f"  {'only before' if fid in old else 'only after'}: {fid}")
    flips = [(fid, a, b) for fid, a, b in timings if a != b]
    print(f"wall-clock findings (indicative) whose measured time differs: {len(timings)}, "
          f"their status too: {len(flips)}")
    for fid, a, b in flips:
        print(f"  {fid}: {a} -> {b}")
    print(f"status, value or interval changed: {len(numbers)}")
    for line in numbers:
        print(f"  {line}")
    for key, ids in words.items():
        print(f"{key} text changed: {len(ids)} finding(s), e.g. {ids[0]}")
        print(f"  before: {old[ids[0]].get(key)}")
        print(f"  after:  {new[ids[0]].get(key)}")
    return 1 if only_old or only_new or numbers else 0


if __name__ == "__main__":
    sys.exit(main())
