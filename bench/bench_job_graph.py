"""The audit's job graph on paper: its critical path and ideal wall time on 1, 8 and 32 workers,
from unit costs measured on this machine by the plan's probe (or given in
SWIGLU_AUDIT_PROBE_SECONDS, to plan for another machine from costs measured there).

    python bench/bench_job_graph.py --out bench/job-graph.json

Two audits: the zoo's standard audit, and the standard audit of the CIFAR-sized user model of
`bench_user_model.py` (two 0.19M-parameter CNNs on 2000 synthetic 3x32x32 images). Nothing is
trained: the plan times a few steps of each model, and the graph's arithmetic does the rest. The
ideal wall time is the larger of the critical path and the total divided among the workers: a
lower bound that a scheduler approaches when jobs are many and even. The matmul rate is recorded
beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import matmul_gflops  # noqa: E402
from bench_user_model import write_project  # noqa: E402

WORKERS = (1, 8, 32)


def graph_of(table: dict, cache: Path, project: Path) -> dict:
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.planning.plan import make_plan
    from swiglu_audit.session import AuditSession

    config = build_config(table, cache_dir=str(cache), project_root=project)
    audit = AuditSession(config)
    plan = make_plan(audit, 1)
    graph = audit_graph(audit, plan.to_dict())
    seconds, path = graph.critical_path()
    return {"plan_estimate_seconds": round(plan.seconds, 1), "jobs": len(graph.jobs),
            "total_job_seconds": round(graph.total_seconds(), 1), "critical_path_seconds": round(seconds, 1),
            "critical_path": path,
            "ideal_seconds": {str(k): round(graph.ideal_seconds(k), 1) for k in WORKERS},
            "largest_jobs": sorted(([j.id, round(j.seconds, 1)] for j in graph.jobs.values()),
                                   key=lambda item: -item[1])[:5]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                 "unit_costs": os.environ.get("SWIGLU_AUDIT_PROBE_SECONDS") or "probed on this machine",
                 "matmul_gflops_before": round(matmul_gflops(), 1)}
    with tempfile.TemporaryDirectory() as tmp:
        out["zoo_standard"] = graph_of({"profile": "standard"}, Path(tmp) / "cache-zoo", Path(tmp))
        folder = Path(tmp) / "user"
        write_project(folder, "standard", "auto", 2000, 500)
        sys.path.insert(0, str(folder))
        table = tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["swiglu_audit"]
        out["user_cnn_standard"] = graph_of(table, Path(tmp) / "cache-user", folder)
    out["matmul_gflops_after"] = round(matmul_gflops(), 1)
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
