"""The training-set scan's held-out verdicts re-judged on their stored facts: recall as a point
value (the rule before) against the low end of its Wilson interval (the rule now). Nothing is
trained: each row of bench/scan-verdicts-heldout*.json keeps the facts its verdict was made from.

    PYTHONPATH=<checkout> python bench/rejudge_scan_recall.py
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path

import swiglu_audit.checks.poison_detection as detection
from swiglu_audit.config import build_config


def point_recall(power: dict, level: float) -> tuple[float, bool]:
    return float(power.get("recall") or 0.0), False


def main() -> None:
    policy = dict(build_config({}, profile="standard").policy)
    interval_rule = detection.recall_bound
    total: Counter = Counter()
    for path in sorted(glob.glob(str(Path(__file__).parent / "scan-verdicts-heldout*.json"))):
        changes: Counter = Counter()
        for row in json.loads(Path(path).read_text())["rows"]:
            facts = {**row["facts"], "min_learned_backdoor": row["facts"].get("min_learned_backdoor", 0.1)}
            detection.recall_bound = point_recall
            before = detection.SCAN.condition.judge(facts, policy)[0].value
            detection.recall_bound = interval_rule
            after = detection.SCAN.condition.judge(facts, policy)[0].value
            changes[f"{before} -> {after}"] += 1
            if before != after:
                print(f"  {Path(path).name}: {row['data']} {row['ffn']} seed {row['seed']} planted {row['kind']}: "
                      f"{before} -> {after}")
        print(Path(path).name, dict(changes))
        total.update(changes)
    print("all", dict(total))


if __name__ == "__main__":
    main()
