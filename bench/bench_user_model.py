"""The audit of a user's own model: two small CNNs on a CIFAR-sized synthetic dataset.

    python bench/bench_user_model.py --profiles quick,standard --workers 2 --out bench/user-model.json

A user project is written into a temporary folder: a dataset factory (10 classes of 3x32x32
images in [0, 1]: each class a smooth colour template, each image shifted, scaled in contrast and
noised) and two CNNs of about 0.2M parameters that differ only in their FFN block (SwiGLU, the
candidate; GELU, the baseline). For each profile, two ways of poisoning:

- "before": `poisoning.mode = "retrain"`, what the audit did before the cheaper mode (every rate,
  every seed, retrained from scratch);
- "after": the default (`mode = "auto"`: the largest flip and targeted rates retrained on two
  seeds, the backdoor at two rates fine-tuned from the clean checkpoints with early stopping).

Each is run cold (an empty cache) as one audit. Recorded per run: the plan's estimate (printed
before training) against the wall time, the trainings' seconds by purpose (from the report's
training records: clean, poisoned retrained, poisoned fine-tuned), and the worker-seconds per suite
(pytest's durations summed per suite file). Then the cost of each suite alone: the clean models are
trained once into a shared cache, and each suite runs on its own against it (the poisoning suite's
cost is then its own trainings, detectors and scan). The matmul rate is recorded beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import matmul_gflops  # noqa: E402

USER_PROJECT = '''
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

N_TRAIN, N_TEST = {n_train}, {n_test}


def make():
    """CIFAR-sized synthetic data: 10 classes of 3x32x32 images in [0, 1]."""
    rng = np.random.default_rng(0)
    coarse = rng.random((10, 3, 4, 4)).astype("float32")
    templates = F.interpolate(torch.from_numpy(coarse), size=(40, 40), mode="bilinear", align_corners=False).numpy()

    def images(n, seed):
        g = np.random.default_rng(seed)
        y = g.integers(0, 10, n)
        dx, dy = g.integers(0, 9, n), g.integers(0, 9, n)
        x = np.stack([templates[c][:, a:a + 32, b:b + 32] for c, a, b in zip(y, dx, dy)])
        contrast = g.uniform(0.5, 1.0, (n, 1, 1, 1)).astype("float32")
        x = 0.5 + (x - 0.5) * contrast + g.normal(0, 0.12, x.shape).astype("float32")
        return np.clip(x, 0, 1).astype("float32"), y

    x_train, y_train = images(N_TRAIN, 1)
    x_test, y_test = images(N_TEST, 2)
    return {{"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "synthetic-cifar"}}


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(d, hidden), nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GELUFFN(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.w2(F.gelu(self.w1(x)))


class SmallCNN(nn.Module):
    def __init__(self, ffn, n_classes=10, d=128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, d))
        self.ffn, self.norm = ffn, nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)

    def forward_features(self, x):
        h = self.body(x)
        return h + self.ffn(self.norm(h))

    def forward(self, x):
        return self.head(self.forward_features(x))


def swiglu_cnn(n_classes=10):
    return SmallCNN(SwiGLU(128, 256), n_classes)  # hidden 256 with three matrices ...


def gelu_cnn(n_classes=10):
    return SmallCNN(GELUFFN(128, 384), n_classes)  # ... matches hidden 384 with two
'''

PYPROJECT = '''
[tool.swiglu_audit]
profile = "{profile}"
dataset = "usercnn:make"

[[tool.swiglu_audit.models]]
name = "swiglu-cnn"
factory = "usercnn:swiglu_cnn"
role = "candidate"

[[tool.swiglu_audit.models]]
name = "gelu-cnn"
factory = "usercnn:gelu_cnn"
role = "baseline"

[tool.swiglu_audit.poisoning]
mode = "{mode}"
'''

SUITES = ("numerical", "adversarial", "ood", "efficiency", "poisoning")


def write_project(folder: Path, profile: str, mode: str, n_train: int, n_test: int) -> None:
    folder.mkdir(parents=True)
    (folder / "usercnn.py").write_text(USER_PROJECT.format(n_train=n_train, n_test=n_test))
    (folder / "pyproject.toml").write_text(PYPROJECT.format(profile=profile, mode=mode))


def run_pytest(folder: Path, cache: Path, workers: int, *extra: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(folder)
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", "-p", "no:cacheprovider", "-q", "--durations=0",
           "--durations-min=0", *extra] + (["-n", str(workers)] if workers > 1 else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc.stdout + proc.stderr


def suite_seconds(output: str) -> dict[str, float]:
    """Worker-seconds per suite: pytest's durations (setup, call, teardown) summed per suite file."""
    totals: dict[str, float] = {}
    for seconds, suite in re.findall(r"^([0-9.]+)s \w+\s+\S*suite_(\w+)\.py::", output, re.M):
        totals[suite] = round(totals.get(suite, 0.0) + float(seconds), 1)
    return totals


def training_seconds(cache: Path) -> dict[str, float]:
    """Seconds of the trainings a cold run did, by purpose: from the records of every checkpoint in
    its cache (every worker's trainings; a report holds one process's view)."""
    from safetensors import safe_open

    out: dict[str, float] = {}
    for path in cache.glob("*/*.safetensors"):
        with safe_open(str(path), "pt") as f:
            record = json.loads((f.metadata() or {}).get("record", "{}"))
        tag = record.get("tag")
        if tag is None:
            continue
        purpose = "clean" if tag == "clean" else "poisoned fine-tuned" if "finetune" in tag else "poisoned retrained"
        out[purpose] = round(out.get(purpose, 0.0) + record["seconds"], 1)
    return out


def audit(tmp: Path, label: str, profile: str, mode: str, args) -> dict:
    folder, cache = tmp / label, tmp / f"{label}-cache"
    write_project(folder, profile, mode, args.n_train, args.n_test)
    seconds, output = run_pytest(folder, cache, args.workers)
    report = json.loads((folder / "reports" / "report.json").read_text())
    plan = report.get("plan") or {}
    counts = {s: 0 for s in ("PASS", "WARN", "FAIL", "ERROR")}
    for f in report["findings"]:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    trainings = {m["name"]: m["trainings"] for m in plan.get("models", [])}
    result = {"profile": profile, "mode": mode, "wall_seconds": round(seconds, 1),
              "plan_estimated_seconds": plan.get("estimated_seconds"), "plan_actual_seconds": plan.get("actual_seconds"),
              "trainings": trainings, "training_seconds": training_seconds(cache),
              "suite_worker_seconds": suite_seconds(output), "statuses": counts,
              "failed": {f["id"]: f["reason"] for f in report["findings"] if f["status"] in ("FAIL", "ERROR")}}
    clean = result["training_seconds"].get("clean", 0.0)
    poisoned = sum(v for k, v in result["training_seconds"].items() if k.startswith("poisoned"))
    result["poisoned_over_clean_training"] = round(poisoned / clean, 2) if clean else None
    print(json.dumps(result), flush=True)
    if not args.keep:
        shutil.rmtree(folder), shutil.rmtree(cache, ignore_errors=True)
    return result


def suites_alone(tmp: Path, profile: str, mode: str, args) -> dict:
    """Each suite run on its own against clean checkpoints trained once (their cost is measured by
    the first, the efficiency suite, which needs nothing else)."""
    folder, cache = tmp / f"alone-{profile}-{mode}", tmp / f"alone-{profile}-{mode}-cache"
    write_project(folder, profile, mode, args.n_train, args.n_test)
    out = {}
    for suite in ("efficiency",) + tuple(s for s in SUITES if s != "efficiency"):
        seconds, _ = run_pytest(folder, cache, args.workers, "-k", f"suite_{suite}")
        out[suite] = round(seconds, 1)
        print(json.dumps({"profile": profile, "mode": mode, "suite": suite, "seconds": out[suite]}), flush=True)
    shutil.rmtree(folder), shutil.rmtree(cache, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="quick,standard")
    ap.add_argument("--modes", default="retrain,auto", help="before (retrain) and after (auto)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--suites-alone", default="standard", help="profiles whose suites are also run one by one (after)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
               "workers": args.workers, "n_train": args.n_train, "n_test": args.n_test,
               "matmul_gflops_before": round(matmul_gflops(), 1), "runs": [], "suites_alone": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.profiles.split(","):
            for mode in args.modes.split(","):
                results["runs"].append(audit(Path(tmp), f"{profile}-{mode}", profile, mode, args))
        for profile in filter(None, args.suites_alone.split(",")):
            results["suites_alone"][profile] = suites_alone(Path(tmp), profile, "auto", args)
    results["matmul_gflops_after"] = round(matmul_gflops(), 1)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
