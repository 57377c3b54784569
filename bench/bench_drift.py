"""The drift suite's tests on planted drifts of known size, with the truth known.

The standard profile's SwiGLU MLP on the built-in digits (its 3 seeds, from the checkpoint cache
or trained), live sets of 250 inputs drawn from the test split (360) without replacement and then changed:
- none: as drawn (no drift; the false-alarm rate of each test, over `--null-reps` draws),
- covariate shift of increasing strength: Gaussian pixel noise of sd 0.05 to 0.3,
- label shift: every test input of classes 0-2 and half as many of the others (2/3 against 3/10),
- corruptions: blur and contrast at severity 3.
For each case: how often the input test (MMD against training inputs) and the prediction test
(chi-square against the validation split's predicted classes) flag drift at alpha = 0.05, and
whether the ATC estimate's 95% interval (seeds, validation and live resamples) holds the true
accuracy on the live set (its labels are known here).

    python bench/bench_drift.py --out bench/drift.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swiglu_audit.config import build_config  # noqa: E402
from swiglu_audit.methods.corruptions import corrupt  # noqa: E402
from swiglu_audit.methods.drift import atc_replicates, mmd_permutation_test, prediction_drift  # noqa: E402
from swiglu_audit.session import AuditSession  # noqa: E402
from swiglu_audit.training.train import predict_logits  # noqa: E402
from swiglu_audit.verdicts.stats import replicate_estimate  # noqa: E402

ALPHA, LEVEL, LIVE_SIZE, N_BOOT = 0.05, 0.95, 250, 300


def live_set(kind: str, strength: float, x: torch.Tensor, y: torch.Tensor, rng) -> tuple[torch.Tensor, torch.Tensor]:
    # without replacement: a live set with repeated inputs is itself unlike the training data,
    # and the two-sample test rightly says so (22% "drift" on repeats of test inputs, measured)
    if kind == "label_shift":  # every test input of classes 0-2, and half as many of the others
        low = np.flatnonzero(y.numpy() <= 2)
        idx = np.r_[low, rng.choice(np.flatnonzero(y.numpy() > 2), len(low) // 2, replace=False)]
    else:
        idx = rng.choice(len(y), LIVE_SIZE, replace=False)
    xs, ys = x[idx], y[idx]
    if kind == "noise":
        xs = (xs + torch.from_numpy(rng.normal(0, strength, xs.shape).astype(np.float32))).clamp(0, 1)
    elif kind in ("blur", "contrast"):
        xs = corrupt(xs, kind, int(strength), seed=int(rng.integers(1 << 30)))
    return xs, ys


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--null-reps", type=int, default=50)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    audit = AuditSession(build_config({"device": "cpu", **({"cache_dir": args.cache_dir} if args.cache_dir else {})},
                                      profile="standard"))
    data, models = audit.data, audit.zoo.models("swiglu-mlp")

    def outputs(x):
        probs = [torch.softmax(predict_logits(m.module, x, audit.device), 1) for m in models]
        return np.stack([pr.max(1).values.numpy() for pr in probs]), np.stack([pr.argmax(1).numpy() for pr in probs])

    val_score, val_pred = outputs(data.x_val)
    val_correct = val_pred == data.y_val.numpy()
    cases = [("none", 0.0, args.null_reps)] + [("noise", s, args.reps) for s in (0.05, 0.1, 0.2, 0.3)] + [
        ("label_shift", 5.0, args.reps), ("blur", 3, args.reps), ("contrast", 3, args.reps)]
    rng = np.random.default_rng(20261204)
    rows, started = [], time.perf_counter()
    for kind, strength, reps in cases:
        input_flags, prediction_flags, covered, errors, widths = [], [], [], [], []
        for r in range(reps):
            xs, ys = live_set(kind, strength, data.x_test, data.y_test, rng)
            mmd = mmd_permutation_test(data.x_train.numpy(), xs.numpy(), 500, 400, seed=r)
            live_score, live_pred = outputs(xs)
            pred = prediction_drift(val_pred[0], live_pred[0], data.n_classes)
            (point, reps_), = atc_replicates(val_score, val_correct, [live_score], N_BOOT, seed=r)
            est = replicate_estimate(point, reps_, len(xs), LEVEL, bounds=(0.0, 1.0))
            truth = float((live_pred == ys.numpy()).mean())  # over the seeds, as the estimate
            input_flags.append(mmd["p_value"] < ALPHA)
            prediction_flags.append(pred["p_value"] < ALPHA)
            covered.append(est.ci_low <= truth <= est.ci_high)
            errors.append(est.value - truth)
            widths.append(est.ci_high - est.ci_low)
        row = {"kind": kind, "strength": strength, "reps": reps, "input_drift_rate": float(np.mean(input_flags)),
               "prediction_drift_rate": float(np.mean(prediction_flags)), "atc_interval_holds_truth": float(np.mean(covered)),
               "atc_mean_error": float(np.mean(errors)), "atc_mean_abs_error": float(np.mean(np.abs(errors))),
               "atc_median_interval_width": float(np.median(widths))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"alpha": ALPHA, "live_size": LIVE_SIZE, "rows": rows, "seconds": round(time.perf_counter() - started, 1),
           "machine": platform.platform(), "seeds": len(models)}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
