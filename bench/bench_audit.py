"""Measure the audit of the built-in zoo with a cold and a warm checkpoint cache.

Each run is a fresh `python -m pytest --swiglu-audit` process in an empty folder; a cold run gets an
empty cache folder, warm runs reuse the cache the first cold run filled. Reported: wall time of
each run, the median, and the peak resident memory of the audit process (from wait4's rusage).

    python bench/bench_audit.py --profile standard --workers 2 --cold-runs 3 --warm-runs 3 --out bench/results.json

Memory: `peak_rss_mb` is the largest resident set of any one process of the run (wait4's
ru_maxrss covers the audit process and the xdist workers it waited for); `peak_tree_rss_mb` is
the largest sum over the whole process tree, sampled from /proc every 0.2 s (Linux only). That
sum counts the pages the processes share (torch's libraries, mapped by each) once per process:
`peak_tree_pss_mb`, the largest sum of their proportional set sizes (each shared page divided
among the processes that map it), sampled with it, is the memory the tree holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """(sum of VmRSS, sum of Pss) over `root` and all its descendants, from /proc."""
    rss = pss = 0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in fh if line.split(":")[0] in ("Rss", "Pss")}
            rss, pss = rss + fields.get("Rss", 0), pss + fields.get("Pss", 0)
        except (OSError, ValueError, IndexError):
            continue
    return rss / 1024, pss / 1024


def _tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:  # the parent's pid follows the name's closing bracket
                parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        tree.append(pid)
        frontier += [p for p, parent in parents.items() if parent == pid]
    return tree


def run_audit(workdir: Path, cache: Path, profile: str, workers: int, executor: str = "local",
              lone: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    if lone:  # every model trained on its own, none stacked
        env["SWIGLU_AUDIT_STACK"] = "0"
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", f"--swiglu-audit-profile={profile}",
           "-p", "no:cacheprovider", "-q"]
    if executor == "ray":  # Ray runs the jobs (a local instance with the machine's CPUs); no xdist
        cmd.append("--swiglu-audit-executor=ray")
    elif workers > 1:
        cmd += ["-n", str(workers)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak_tree, finished = [0.0, 0.0], threading.Event()

    def sample():  # never poll() the process here: os.wait4 below must be the one to reap it
        while not finished.is_set():
            rss, pss = _tree_memory_mb(proc.pid)
            peak_tree[:] = [max(peak_tree[0], rss), max(peak_tree[1], pss)]
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # EOF: the audit has closed its output, i.e. it is exiting
    finished.set()
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    report = json.loads((workdir / "reports" / "report.json").read_text())
    sampler.join(timeout=1)
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),
            "peak_tree_rss_mb": round(peak_tree[0], 1), "peak_tree_pss_mb": round(peak_tree[1], 1),
            "exit_status": os.waitstatus_to_exitcode(status), "verdict": report["summary"]["verdict"],
            "n_findings": len(report["findings"]),
            # the cache's folder is a temporary path of this machine: left out of the results
            "cache": {k: v for k, v in report["environment"]["cache"].items() if k != "dir"},
            "tail": out.decode(errors="replace").splitlines()[-1:]}


def _make_folder(work: Path, seeds: list[int] | None) -> None:
    """An empty audit folder; with `seeds`, a pyproject.toml that sets them."""
    work.mkdir()
    if seeds:
        (work / "pyproject.toml").write_text(f"[tool.swiglu_audit]\nseeds = {seeds}\n")


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    """The machine's float32 matmul rate now (DESIGN.md section 7: machines of one type differ
    from day to day, so every timing is recorded beside it)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return round(2 * n**3 * repeats / (time.perf_counter() - started) / 1e9, 1)


@contextlib.contextmanager
def zoo_audit_on_empty_cache(profile: str, threads: int):
    """The zoo's audit session (`profile`) over an empty cache in a temporary folder, at `threads`
    torch threads, for the benchmarks that time its jobs; yields (session, the matmul rate before)."""
    import torch

    from swiglu_audit.config import build_config
    from swiglu_audit.session import AuditSession

    torch.set_num_threads(threads)
    rate_before = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        yield AuditSession(build_config({"profile": profile}, cache_dir=str(Path(tmp) / "cache"),
                                        project_root=Path(tmp))), rate_before


def write_rows(out: str, rows: list, rate_before: float, **machine) -> None:
    """A micro-benchmark's rows as JSON, beside the machine (and `machine`'s extra fields, such as
    the threads it timed at) and its matmul rate before and after (DESIGN.md section 7)."""
    import torch

    result = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__, **machine},
              "matmul_gflops_before": rate_before, "rows": rows, "matmul_gflops_after": matmul_gflops()}
    Path(out).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (1: serial)")
    ap.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="ray: the audit's jobs on a local Ray instance (--workers is then not used)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep-reports", default=None, help="copy the first cold run's reports/ folder here")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated training seeds, written to the audit folder's pyproject.toml "
                         "(default: the profile's)")
    ap.add_argument("--lone", action="store_true", help="train every model alone (SWIGLU_AUDIT_STACK=0)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    import torch

    results = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "torch": torch.__version__,
                           "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
               "profile": args.profile, "workers": args.workers, "executor": args.executor, "cold": [], "warm": [],
               "seeds": seeds or "the profile's", "stacking": "off" if args.lone else "on",
               # bytecode not written (an environment setting): every process compiles the package again
               "python_dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
               "matmul_gflops_before": matmul_gflops()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first_cache = None
        for i in range(args.cold_runs):
            cache, work = tmp / f"cache-cold-{i}", tmp / f"work-cold-{i}"
            _make_folder(work, seeds)
            results["cold"].append(run_audit(work, cache, args.profile, args.workers, args.executor, args.lone))
            if args.keep_reports and first_cache is None:
                shutil.copytree(work / "reports", args.keep_reports, dirs_exist_ok=True)
            first_cache = first_cache or cache
            print("cold", results["cold"][-1], flush=True)
        for i in range(args.warm_runs):
            work = tmp / f"work-warm-{i}"
            _make_folder(work, seeds)
            results["warm"].append(run_audit(work, first_cache, args.profile, args.workers, args.executor, args.lone))
            print("warm", results["warm"][-1], flush=True)
    results["matmul_gflops_after"] = matmul_gflops()
    rate = (results["matmul_gflops_before"] + results["matmul_gflops_after"]) / 2
    for kind in ("cold", "warm"):
        runs = results[kind]
        if runs:
            results[f"{kind}_median_seconds"] = statistics.median(r["seconds"] for r in runs)
            # the budget is stated for a 220 GFLOP/s machine: time x measured rate / 220
            results[f"{kind}_median_seconds_at_220_gflops"] = round(results[f"{kind}_median_seconds"] * rate / 220, 1)
            results[f"{kind}_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            results[f"{kind}_peak_tree_rss_mb"] = max(r["peak_tree_rss_mb"] for r in runs)
            results[f"{kind}_peak_tree_pss_mb"] = max(r["peak_tree_pss_mb"] for r in runs)
    print(json.dumps({k: v for k, v in results.items() if k not in ("cold", "warm")}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
