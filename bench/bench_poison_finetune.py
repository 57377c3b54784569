"""Poisoning by fine-tuning the clean checkpoint against retraining from scratch, on the built-in zoo.

    python bench/bench_poison_finetune.py --profile standard --families mlp --workers 2 --out bench/poison-finetune.json

Runs the poisoning suite's attack checks (label flipping, targeted flipping, backdoor success and
the candidate-vs-baseline comparisons) twice on the same zoo and data: `mode = "retrain"` and
`mode = "fine_tune"` (the clean checkpoint trained on for `fine_tune_share` of the epochs). For each
finding of both runs: the two values, their intervals, whether the intervals overlap, and whether
the statuses agree; plus the trainings' seconds of each mode. Fine-tuning measures the same risk
where the conclusions agree within the intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKS = "label_flip_degradation or targeted_label_flip or backdoor_attack_success"


def run(mode: str, folder: Path, cache: Path, profile: str, families: list[str], workers: int,
        extra: str = "") -> dict:
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        f'[tool.swiglu_audit]\nprofile = "{profile}"\nfamilies = {json.dumps(families)}\n'
        f'[tool.swiglu_audit.poisoning]\nmode = "{mode}"\nfamilies = {json.dumps(families)}\n{extra}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", "-p", "no:cacheprovider", "-q", "-k", CHECKS]
    cmd += ["-n", str(workers)] if workers > 1 else []
    started = time.perf_counter()
    subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    doc = json.loads((folder / "reports" / "report.json").read_text())
    poisoned_seconds = sum(r["train_seconds"] or 0 for m in doc["environment"]["models"].values()
                           for tag, runs in m["runs"].items() if tag != "clean" for r in runs if not r["cached"])
    return {"seconds": round(seconds, 1), "poisoned_training_seconds": round(poisoned_seconds, 1),
            "findings": {f["id"]: f for f in doc["findings"]}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--families", default="mlp")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--fine-tune-share", type=float, default=None, help="poisoning.fine_tune_share of the cheaper run")
    ap.add_argument("--patience", type=int, default=None, help="poisoning.early_stopping_patience of the cheaper run")
    args = ap.parse_args()
    families = args.families.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"  # shared: the clean checkpoints are trained once and fine-tuned from
        retrain = run("retrain", tmp / "retrain", cache, args.profile, families, args.workers)
        extra = "".join(f"{key} = {value}\n" for key, value in (("fine_tune_share", args.fine_tune_share),
                        ("early_stopping_patience", args.patience)) if value is not None)
        fine = run("fine_tune", tmp / "fine_tune", cache, args.profile, families, args.workers, extra)
    rows = []
    for fid, a in sorted(retrain["findings"].items()):
        b = fine["findings"].get(fid)
        if b is None or a.get("value") is None or b.get("value") is None:
            continue
        overlap = None
        if a.get("ci_low") is not None and b.get("ci_low") is not None:
            overlap = a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]
        rows.append({"id": fid, "retrain": [a["value"], a.get("ci_low"), a.get("ci_high"), a["status"]],
                     "fine_tune": [b["value"], b.get("ci_low"), b.get("ci_high"), b["status"]],
                     "intervals_overlap": overlap, "same_status": a["status"] == b["status"]})
    summary = {"profile": args.profile, "families": families, "fine_tune_share": args.fine_tune_share,
               "early_stopping_patience": args.patience, "findings_compared": len(rows),
               "same_status": sum(r["same_status"] for r in rows),
               "intervals_overlap": sum(bool(r["intervals_overlap"]) for r in rows),
               "with_intervals": sum(r["intervals_overlap"] is not None for r in rows),
               "retrain": {k: retrain[k] for k in ("seconds", "poisoned_training_seconds")},
               "fine_tune": {k: fine[k] for k in ("seconds", "poisoned_training_seconds")}}
    print(json.dumps(summary, indent=2))
    for r in rows:
        if not r["same_status"] or r["intervals_overlap"] is False:
            print("differs:", json.dumps(r))
    if args.out:
        Path(args.out).write_text(json.dumps({**summary, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
