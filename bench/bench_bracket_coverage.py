"""Coverage of the compute-to-target interval (`stats.bracketed_relative_comparison`) on the
learning-curve schedule the audit records, by simulation, against the interval over the
straight-line readings alone (the rule before).

Each seed's validation accuracy follows a_max * (1 - exp(-step / tau)), tau drawn per seed around
its architecture's mean (coefficient of variation `--seed-cv`), measured with binomial noise on
`--n-val` validation inputs at the audit's curve points: steps 1, 2, 4, ... inside the first
epoch and every epoch's end (`training.train.is_curve_point`, `--steps-per-epoch`). The quantity
is steps to the target accuracy; its truth for an architecture is the mean over seeds of the
first step at which the accuracy, measured at every step, reaches the target (Monte Carlo over
`--truth-seeds` seeds). The true relative difference is the ratio of the two truths less 1. The
cells: seeds per architecture (2, 3, 5) and the baseline's tau against the candidate's.

    python bench/bench_bracket_coverage.py --reps 1000 --out bench/bracket-coverage.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swiglu_audit.methods.efficiency import first_reaching, reaching_bracket  # noqa: E402
from swiglu_audit.training.train import is_curve_point  # noqa: E402
from swiglu_audit.verdicts import stats  # noqa: E402

A_MAX, TARGET = 0.97, 0.90


def curve_points(steps_per_epoch: int, epochs: int) -> np.ndarray:
    total = steps_per_epoch * epochs
    return np.array([s for s in range(1, total + 1) if is_curve_point(s, steps_per_epoch) or s % steps_per_epoch == 0])


def dense_crossings(rng, tau_mean: float, cv: float, n_val: int, n: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(n seeds' taus, their accuracies measured at every step 1..total)."""
    taus = tau_mean * np.exp(rng.normal(0, cv, n))
    steps = np.arange(1, total + 1)
    clean = A_MAX * (1 - np.exp(-steps[None, :] / taus[:, None]))
    return taus, rng.binomial(n_val, clean) / n_val


def first_dense(acc: np.ndarray) -> np.ndarray:
    hit = acc >= TARGET
    return np.where(hit.any(1), hit.argmax(1) + 1, np.nan)


def arm(rng, tau_mean, args, points, total):
    _, acc = dense_crossings(rng, tau_mean, args.seed_cv, args.n_val, args.seeds, total)
    read, brackets = [], []
    for row in acc:
        ys = row[points - 1]
        hit = first_reaching(points, ys, TARGET)
        if hit is None:
            return None
        read.append(hit)
        low, high, _ = reaching_bracket(points, ys, TARGET)
        brackets.append([low, high])
    return np.array(read), np.array(brackets, float)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--steps-per-epoch", type=int, default=17)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n-val", type=int, default=180)
    ap.add_argument("--seed-cv", type=float, default=0.1)
    ap.add_argument("--truth-seeds", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    points = curve_points(args.steps_per_epoch, args.epochs)
    total = int(points[-1])
    rows = []
    for tau_base in (40.0, 44.0, 52.0):
        tau_cand = 40.0
        truth = {t: float(np.nanmean(first_dense(dense_crossings(rng, t, args.seed_cv, args.n_val, args.truth_seeds,
                                                                    total)[1]))) for t in (tau_cand, tau_base)}
        true_diff = truth[tau_cand] / truth[tau_base] - 1
        for seeds in (2, 3, 5):
            args.seeds = seeds
            covered = {"bracketed": 0, "readings": 0}
            widths = {"bracketed": [], "readings": []}
            done = 0
            while done < args.reps:
                a, b = arm(rng, tau_cand, args, points, total), arm(rng, tau_base, args, points, total)
                if a is None or b is None:
                    continue
                done += 1
                bracketed = stats.bracketed_relative_comparison(a[0], b[0], a[1], b[1])
                ratio = a[0].mean() / b[0].mean()
                readings = stats.paired_comparison((a[0] / b[0].mean())[:, None],
                                                   (1 + ratio * (b[0] / b[0].mean() - 1))[:, None])
                for name, c in (("bracketed", bracketed), ("readings", readings)):
                    covered[name] += c.ci_low <= true_diff <= c.ci_high
                    widths[name].append(c.ci_high - c.ci_low)
            row = {"tau_candidate": tau_cand, "tau_baseline": tau_base, "true_difference": round(true_diff, 4),
                   "seeds": seeds, "reps": args.reps,
                   **{f"coverage_{k}": round(v / args.reps, 4) for k, v in covered.items()},
                   **{f"median_width_{k}": round(float(np.median(v)), 4) for k, v in widths.items()}}
            rows.append(row)
            print(row, flush=True)
    out = {"machine": platform.platform(), "settings": {k: v for k, v in vars(args).items() if k != "out"},
           "curve_points": points[:12].tolist() + ["..."], "target": TARGET, "a_max": A_MAX, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
