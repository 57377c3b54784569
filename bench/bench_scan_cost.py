"""What a cheaper trigger scan costs in power, on a user's CNN with CIFAR-sized inputs.

    python bench/bench_scan_cost.py --out bench/scan-cost-cnn.json

The synthetic CIFAR-sized data and the SwiGLU CNN of `bench_user_model.py` (2,000 training images
of 3x32x32, 0.19M parameters). Each case plants a backdoor the CNN learns (5% of the training set
relabelled to the target, with a 4x4 patch, a 4x4 checkerboard, or three sparse pixels, in a
corner of the attacker's choosing) or none (a clean case, for false alarms), trains the CNN from
scratch, and runs the scan with each setting: (optimisation steps per class, other-class inputs
per class). Recorded: attack success, the target found, precision and recall of the flags, and
the scan's seconds at one thread (as the audit runs it). The matmul rate is recorded beside.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import matmul_gflops  # noqa: E402
from bench_user_model import USER_PROJECT  # noqa: E402

from swiglu_audit.methods.backdoor_scan import scan  # noqa: E402
from swiglu_audit.training.features import penultimate_features  # noqa: E402
from swiglu_audit.training.train import Recipe, train_model  # noqa: E402

CHECKER = (torch.arange(16).reshape(4, 4) + torch.arange(4)[:, None]) % 2  # a 4x4 checkerboard


def stamp(x: torch.Tensor, kind: str) -> torch.Tensor:
    out = x.clone()
    if kind == "patch":  # bottom-right 4x4, white
        out[:, :, -4:, -4:] = 1.0
    elif kind == "checkerboard":  # top-left 4x4
        out[:, :, :4, :4] = CHECKER.float()
    elif kind == "sparse":  # three single pixels
        for r, c in ((2, 29), (16, 3), (30, 17)):
            out[:, :, r, c] = 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="200x60,100x30,50x20",
                    help="scan settings to compare, STEPSxPER_CLASS (the scan reads 2 x PER_CLASS other-class inputs)")
    ap.add_argument("--kinds", default="none,patch,checkerboard,sparse")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    namespace: dict = {}
    exec(USER_PROJECT.format(n_train=2000, n_test=500), namespace)  # the user-model benchmark's data and CNN
    data = namespace["make"]()
    x_all, y_all = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]).long()
    x_val, y_val, x, y = x_all[:400], y_all[:400], x_all[400:], y_all[400:]
    x_test, y_test = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"]).long()
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    device, target, rate = torch.device("cpu"), 3, 0.05
    rows = []
    for kind in args.kinds.split(","):
        xs, ys, truth = x.clone(), y.clone(), np.zeros(len(y), dtype=bool)
        if kind != "none":
            pool = np.flatnonzero(y.numpy() != target)
            idx = np.random.default_rng(0).choice(pool, int(round(rate * len(y))), replace=False)
            xs[idx], ys[idx], truth[idx] = stamp(xs[idx], kind), target, True
        torch.manual_seed(0)
        model = namespace["swiglu_cnn"]()
        torch.set_num_threads(2)
        train_model(model, xs, ys, Recipe(epochs=args.epochs), 0, device, x_val, y_val)
        model.eval()
        with torch.no_grad():
            clean_acc = float((model(x_test).argmax(1) == y_test).float().mean())
            others = x_test[y_test != target]
            asr = float((model(stamp(others, kind)).argmax(1) == target).float().mean()) if kind != "none" else None
        features = penultimate_features(model, xs, device).numpy()
        for steps, per_class in settings:
            started = time.perf_counter()
            result = scan(model, xs, ys, 10, device, features=features, steps=steps, per_class=per_class)
            seconds = time.perf_counter() - started
            flags = result.flags
            hits = int((flags & truth).sum())
            rows.append({"kind": kind, "steps": steps, "per_class": per_class, "clean_accuracy": clean_acc, "asr": asr,
                         "found_target": result.target,
                         "target_right": (result.target == target) if kind != "none" else result.target is None,
                         "n_flagged": int(flags.sum()), "precision": hits / int(flags.sum()) if flags.any() else None,
                         "recall": hits / int(truth.sum()) if truth.any() else None,
                         "max_anomaly_index": round(max(result.anomaly_index), 2), "seconds": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "scan_threads": 1,
                       "matmul_gflops": round(matmul_gflops(), 1)},
           "epochs": args.epochs, "rate": rate, "target": target, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
