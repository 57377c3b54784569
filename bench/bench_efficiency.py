"""What the efficiency suite costs, in the standard profile.

    python bench/bench_efficiency.py --profile standard --workers 2 --warm-runs 3 --out bench/efficiency-cost.json

1. One cold run of the efficiency suite alone (`-k efficiency`): it trains the clean models, which
   record their learning curves; the report gives, per training, the seconds spent training and
   the seconds spent on the learning curve's validation passes (`curve_eval_seconds`).
2. Warm runs (checkpoints cached) of the whole efficiency suite, and of its one check that existed
   before it measured efficiency (`clean_accuracy_vs_baseline`): their difference is what the
   suite's own measurements (training-memory count, paired latency and throughput timings,
   statistics) cost; median of the warm runs, in the same process tree and machine state.
The machine's float32 matmul rate is measured before and after (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_audit import matmul_gflops  # noqa: E402


def run(workdir: Path, cache: Path, profile: str, workers: int, selection: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", f"--swiglu-audit-profile={profile}", "-p",
           "no:cacheprovider", "-q", "-k", selection] + (["-n", str(workers)] if workers > 1 else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    report = json.loads((workdir / "reports" / "report.json").read_text())
    return {"selection": selection, "seconds": round(seconds, 2), "exit_status": proc.returncode,
            "n_findings": len(report["findings"]), "report": report}


def training_overhead(report: dict) -> dict:
    runs = [r for m in report["environment"]["models"].values() for rs in m["runs"].values() for r in rs
            if not r["cached"] and r.get("train_seconds") is not None]
    train = sum(r["train_seconds"] for r in runs)
    curve = sum(r.get("curve_eval_seconds") or 0.0 for r in runs)
    return {"trainings": len(runs), "train_seconds": round(train, 2), "curve_eval_seconds": round(curve, 2),
            "curve_eval_share_of_training": round(curve / train, 4) if train else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    results = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
               "profile": args.profile, "workers": args.workers, "matmul_gflops_before": matmul_gflops()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        (tmp / "cold").mkdir()
        cold = run(tmp / "cold", cache, args.profile, args.workers, "efficiency")
        results["cold"] = {k: v for k, v in cold.items() if k != "report"} | training_overhead(cold["report"])
        print("cold", results["cold"], flush=True)
        warm = {"efficiency": [], "clean_accuracy_vs_baseline": []}
        for i in range(args.warm_runs):
            for selection in warm:  # alternated, so that a change in the machine's load falls on both
                work = tmp / f"warm-{selection}-{i}"
                work.mkdir()
                r = run(work, cache, args.profile, args.workers, selection)
                warm[selection].append({k: v for k, v in r.items() if k != "report"})
                print("warm", warm[selection][-1], flush=True)
        results["warm"] = warm
    medians = {k: statistics.median(r["seconds"] for r in v) for k, v in warm.items()}
    results["warm_median_seconds"] = medians
    results["suite_measurement_seconds"] = round(medians["efficiency"] - medians["clean_accuracy_vs_baseline"], 2)
    results["matmul_gflops_after"] = matmul_gflops()
    print(json.dumps({k: v for k, v in results.items() if k != "warm"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
