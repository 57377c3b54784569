"""Where a cold audit's time goes, job by job, measured: every job of the zoo's audit graph run in
one process, in the graph's order, on an empty cache, each timed, beside the plan's estimate of it.

    python bench/bench_job_costs.py --profile standard --threads 2 --out bench/job-costs.json

The jobs are the audit's prefetch work (trainings, attacks, scans, suite measurements); what the
checks then do to judge is not in them (the plan's "checks" line). One process runs them all, so
the sum is a serial cold audit's prefetch time at `--threads` threads, not a `-n 2` audit's wall
time. Rows are grouped by model family and by suite, so the figures say which work a speed-up
must reach. The matmul rate is recorded before and after (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import write_rows, zoo_audit_on_empty_cache  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from swiglu_audit.jobs.audit_jobs import audit_graph, run_job
    from swiglu_audit.planning.plan import make_plan

    rows = []
    with zoo_audit_on_empty_cache(args.profile, args.threads) as (audit, rate_before):
        config = audit.config  # the device resolved
        plan = make_plan(audit, 1)
        graph = audit_graph(audit, plan.to_dict())
        wall = time.perf_counter()
        for job_id in graph.order:
            job = graph.jobs[job_id]
            result = run_job(config, job, "bench", args.threads)
            rows.append({"job": job_id, "model": job.model, "suite": job.suite, "part": job.part,
                         "measured_seconds": result["seconds"], "plan_seconds": round(job.seconds, 2),
                         "error": result["error"]})
            print(f"{job_id:55s} {result['seconds']:8.2f} s  (plan {job.seconds:6.1f})", flush=True)
        wall = time.perf_counter() - wall
    by_family: dict[str, float] = defaultdict(float)
    by_suite: dict[str, float] = defaultdict(float)
    for row in rows:
        by_family[row["model"].rsplit("-", 1)[-1]] += row["measured_seconds"]
        by_suite[row["suite"]] += row["measured_seconds"]
    summary = {"jobs_seconds": round(wall, 1), "plan_seconds": round(plan.seconds, 1),
               "by_family": {k: round(v, 1) for k, v in sorted(by_family.items())},
               "by_suite": {k: round(v, 1) for k, v in sorted(by_suite.items(), key=lambda kv: -kv[1])}}
    print(json.dumps(summary, indent=1))
    if args.out:
        write_rows(args.out, [summary, *rows], rate_before, threads=args.threads, profile=args.profile)


if __name__ == "__main__":
    main()
