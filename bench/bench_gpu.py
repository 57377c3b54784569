"""The audit on a CUDA GPU, in one go: quick profile cold, standard cold and warm, full cold.

    python bench/bench_gpu.py --out-dir OUT [--deadline 560] [--workers 8]

Each run is a fresh `python -m pytest --swiglu-audit --swiglu-audit-device=cuda` process; a cold run
starts in an empty folder with an empty cache, a warm run in the folder its cold run left (its
checkpoint cache, and its golden files, which the warm run then compares against). Recorded per run:
wall time, exit status, verdict, finding counts, the largest GPU memory in use by all processes
(nvidia-smi, sampled every 0.5 s: CUDA contexts of every xdist worker included), mean GPU
utilisation, the slowest checks (pytest --durations), and the parity findings (CPU vs CUDA
logits and flip rate, bf16 vs float32, training determinism, golden files). Before the runs, the
device's matmul rates, torch's math settings and the unit costs (one training step, one
attack step) are written down. A run that would pass the
deadline is stopped and recorded as unfinished; a quick run with ERROR findings stops the rest
(the later profiles would fail the same way, and GPU time is scarce).

Written to OUT: gpu-results.json, gpu-runs.log (each run's output), and each run's report.json
(`<profile>-<cold|warm>-report.json`), which `swiglu-audit compare` can set against a CPU run's.
On a machine without CUDA, `--device cpu --profiles quick` tries every part but the GPU ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

PARITY_CHECKS = ("cpu_vs_accelerator", "precision_parity", "precision_parity_bf16", "training_determinism",
                 "golden_outputs", "golden_outputs_bf16")


def gpu_sample() -> tuple[float, float] | None:
    """(memory used by all processes in MiB, utilisation %) from nvidia-smi, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
        used, util = (float(v) for v in out.split(","))
        return used, util
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def matmul_rates(device: str) -> dict:
    """The device's matmul rate now, float32 (TF32 as torch's defaults leave it) and bf16."""
    import torch

    rates = {}
    for name, dtype, n in (("float32", torch.float32, 4096), ("bfloat16", torch.bfloat16, 8192)):
        if device == "cpu":
            dtype, n = torch.float32, 1024
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        sync()
        started, repeats = time.perf_counter(), 10
        for _ in range(repeats):
            a @ b
        sync()
        rates[f"{name}_tflops"] = round(2 * n**3 * repeats / (time.perf_counter() - started) / 1e12, 2)
        if device == "cpu":
            break
    return rates


def step_timings(device: str, steps: int = 100) -> dict:
    """Milliseconds per training step (batch 64, the recipe's AdamW, bf16 autocast on CUDA) and per
    attack step (forward and input gradient on 360 examples) of the SwiGLU MLP and ViT on 8x8
    digits-shaped inputs: the unit costs the audit repeats tens of thousands of times."""
    import torch

    from swiglu_audit.training.device import autocast
    from swiglu_audit.training.nn import ModelConfig, build_model
    from swiglu_audit.training.specs import load_zoo_table

    dev, zoo, out = torch.device(device), load_zoo_table(), {}
    for family in ("mlp", "vit"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(family=family, ffn="swiglu", n_classes=10, input_shape=(1, 8, 8),
                                        **zoo["families"][family])).to(dev)
        for name, ms in _unit_costs(model, dev, steps, autocast).items():
            out[f"{family}_{name}"] = ms
    return out


def _unit_costs(model, dev, steps: int, autocast) -> dict:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = torch.rand(64, 1, 8, 8, device=dev), torch.randint(0, 10, (64,), device=dev)
    xa, ya = torch.rand(360, 1, 8, 8, device=dev), torch.randint(0, 10, (360,), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train_step():
        with autocast(dev):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def attack_step():
        xa.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xa), ya)
        torch.autograd.grad(loss, xa)

    out = {}
    for name, step in (("train_step_ms", train_step), ("attack_step_ms", attack_step)):
        for _ in range(10):
            step()
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        out[name] = round((time.perf_counter() - started) / steps * 1000, 3)
    return out


def environment(device: str) -> dict:
    import torch

    from swiglu_audit.training.device import math_settings

    env = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
           "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
           "math_settings": math_settings(torch.device(device)), "matmul": matmul_rates(device),
           "unit_costs": step_timings(device)}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}"})
    return env


def summarise(report: dict) -> dict:
    findings = report["findings"]
    parity = [{"check": f["check"], "models": f.get("models"), "status": f["status"], "value": f.get("value"),
               "reason": f["reason"]} for f in findings if f["check"] in PARITY_CHECKS]
    return {"verdict": report["summary"]["verdict"], "n_findings": len(findings),
            "statuses": dict(Counter(f["status"] for f in findings)),
            "cache": report["environment"].get("cache"), "device": report["environment"].get("device"),
            "train_seconds": {name: [r.get("train_seconds") for runs in m["runs"].values() for r in runs]
                              for name, m in (report["environment"].get("models") or {}).items()},
            "parity": parity}


def run_audit(profile: str, device: str, workers: int, workdir: Path, cache: Path, timeout: float, log) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", f"--swiglu-audit-profile={profile}",
           f"--swiglu-audit-device={device}", "-p", "no:cacheprovider", "-q", "--durations=25"]
    cmd += ["-n", str(workers)] if workers > 1 else []
    peak, utils, done = [0.0], [], threading.Event()
    (workdir / "reports" / "report.json").unlink(missing_ok=True)  # a warm run must not read the cold run's

    def sample():
        while not done.is_set():
            s = gpu_sample()
            if s:
                peak[0] = max(peak[0], s[0])
                utils.append(s[1])
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
        out, code, finished = proc.stdout + proc.stderr, proc.returncode, True
    except subprocess.TimeoutExpired as stopped:
        out = (stopped.stdout or b"").decode(errors="replace") if isinstance(stopped.stdout, bytes) else (stopped.stdout or "")
        code, finished = None, False
    seconds = time.perf_counter() - started
    done.set()
    sampler.join(timeout=2)
    log.write(f"\n===== {profile} ({device}, {workers} workers): {seconds:.1f} s, exit {code} =====\n{out[-20000:]}\n")
    log.flush()
    result = {"profile": profile, "seconds": round(seconds, 1), "finished": finished, "exit_status": code,
              "workers": workers, "peak_gpu_memory_mib": peak[0] or None,
              "mean_gpu_utilisation_pct": round(sum(utils) / len(utils), 1) if utils else None,
              "slowest": [line.strip() for line in out.splitlines() if line.strip().split(" ")[0].endswith("s")
                          and (" call " in line or " setup " in line)][:25]}
    report_path = workdir / "reports" / "report.json"
    if finished and report_path.exists():
        report = json.loads(report_path.read_text())
        result.update(summarise(report))
        result["report_path"] = report_path
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--profiles", default="quick,standard,full", help="in order, each cold")
    ap.add_argument("--warm", default="standard", help="profiles also run warm, right after their cold run")
    ap.add_argument("--workers", type=int, default=8, help="pytest-xdist workers for standard and full")
    ap.add_argument("--deadline", type=float, default=560, help="seconds for the whole script")
    args = ap.parse_args()
    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"environment": environment(args.device), "runs": []}
    print(json.dumps(results["environment"], indent=2), flush=True)

    def left() -> float:
        return args.deadline - (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp, open(out_dir / "gpu-runs.log", "w") as log:
        tmp = Path(tmp)
        plan = []
        for profile in args.profiles.split(","):
            plan.append((profile, "cold"))
            if profile in args.warm.split(","):
                plan.append((profile, "warm"))
        for profile, kind in plan:
            if left() < 20:
                results["runs"].append({"profile": profile, "kind": kind, "skipped": "deadline"})
                continue
            # a warm run reuses the cold run's folder: its cache, and its golden files, which the
            # cold run created and the warm run compares against
            work = tmp / f"work-{profile}"
            work.mkdir(exist_ok=True)
            cache = tmp / f"cache-{profile}"
            workers = 4 if profile == "quick" else args.workers
            result = run_audit(profile, args.device, workers, work, cache, left(), log)
            result["kind"] = kind
            if "report_path" in result:
                shutil.copy(result.pop("report_path"), out_dir / f"{profile}-{kind}-report.json")
            results["runs"].append(result)
            print(json.dumps({k: v for k, v in result.items() if k not in ("parity", "slowest", "train_seconds")}), flush=True)
            (out_dir / "gpu-results.json").write_text(json.dumps(results, indent=2, default=str))
            if profile == "quick" and (not result["finished"] or result.get("statuses", {}).get("ERROR")):
                print("quick profile did not run cleanly: stopping here", flush=True)
                break
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "gpu-results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
