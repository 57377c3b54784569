"""The plan's price of the trigger scan against the scan's optimisation timed, on the zoo's MLPs.

    python bench/bench_scan_price.py [--out bench/scan-price.json]

For each model: the plan's probe (the unit cost it times), the scan units the poisoning job
declares, their priced seconds, and the optimisation those units stand for (every class's mask
and pattern over the scan's steps, classes grouped as the scan groups them) timed on a fresh
model at one thread, as the scan runs: the median of 3, times the number of scans declared.
The matmul rate is recorded beside it (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["swiglu-mlp", "relu-mlp"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from bench_audit import matmul_gflops

    from swiglu_audit.config import build_config
    from swiglu_audit.measure.poisoning import scan_settings
    from swiglu_audit.methods import backdoor_scan
    from swiglu_audit.planning.plan import declared_work, probe
    from swiglu_audit.session import AuditSession

    out = {"torch": torch.__version__, "matmul_gflops_before": matmul_gflops(), "models": {}}
    with tempfile.TemporaryDirectory() as cache:
        audit = AuditSession(build_config({"device": "cpu", "cache_dir": cache, "families": ["mlp"]},
                                          profile="standard"))
        data, cpu = audit.data, torch.device("cpu")
        for name in args.models:
            costs = probe(audit, name, workers=2)
            units = sum(w.units.get("trigger scan", 0) for w in declared_work(audit, name).values())
            steps = scan_settings(audit, name)["steps"]
            scans = units / (data.n_classes * steps)
            torch.manual_seed(0)
            model = audit.zoo.instantiate(audit.zoo.spec(name)).eval()
            inputs = [data.x_train[torch.randperm(len(data.x_train))[:backdoor_scan.inputs_per_step()]]
                      for _ in range(data.n_classes)]
            threads, times = torch.get_num_threads(), []
            torch.set_num_threads(1)  # as the scan runs
            for _ in range(3):
                started = time.perf_counter()
                backdoor_scan.reverse_engineer_classes(model, inputs, list(range(data.n_classes)), cpu, steps=steps)
                times.append(time.perf_counter() - started)
            torch.set_num_threads(threads)
            one = statistics.median(times)
            row = {"unit_ms": round(costs.units["trigger scan"] * 1e3, 3), "units": units, "scans": round(scans, 2),
                   "priced_s": round(units * costs.units["trigger scan"], 2), "one_scan_s": round(one, 3),
                   "timed_s": round(one * scans, 2)}
            row["priced_over_timed"] = round(row["priced_s"] / row["timed_s"], 2)
            out["models"][name] = row
            print(name, row, flush=True)
    out["matmul_gflops_after"] = matmul_gflops()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
