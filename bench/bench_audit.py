"""Measure the audit of the built-in zoo with a cold and a warm checkpoint cache.

Each run is a fresh `python -m pytest --swiglu-audit` process in an empty folder; a cold run gets an
empty cache folder, warm runs reuse the cache the first cold run filled. Reported: wall time of
each run, the median, and the peak resident memory of the audit process (from wait4's rusage).

    python bench/bench_audit.py --profile standard --cold-runs 3 --warm-runs 3 --out bench/results.json
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


def run_audit(workdir: Path, cache: Path, profile: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", f"--swiglu-audit-profile={profile}",
           "-p", "no:cacheprovider", "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    report = json.loads((workdir / "reports" / "report.json").read_text())
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),
            "exit_status": os.waitstatus_to_exitcode(status), "verdict": report["summary"]["verdict"],
            "n_findings": len(report["findings"]), "cache": report["environment"]["cache"],
            "tail": out.decode(errors="replace").splitlines()[-1:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    results = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "torch": torch.__version__,
                           "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
               "profile": args.profile, "cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first_cache = None
        for i in range(args.cold_runs):
            cache, work = tmp / f"cache-cold-{i}", tmp / f"work-cold-{i}"
            work.mkdir()
            results["cold"].append(run_audit(work, cache, args.profile))
            first_cache = first_cache or cache
            print("cold", results["cold"][-1], flush=True)
        for i in range(args.warm_runs):
            work = tmp / f"work-warm-{i}"
            work.mkdir()
            results["warm"].append(run_audit(work, first_cache, args.profile))
            print("warm", results["warm"][-1], flush=True)
    for kind in ("cold", "warm"):
        runs = results[kind]
        if runs:
            results[f"{kind}_median_seconds"] = statistics.median(r["seconds"] for r in runs)
            results[f"{kind}_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    print(json.dumps({k: v for k, v in results.items() if k not in ("cold", "warm")}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
