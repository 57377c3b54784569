"""Coverage of the sanity checks' intervals (`stats.fixed_models_difference`, `fixed_models_mean`)
where the trained models are fixed and the attacked inputs are the draw, simulated.

Each trial draws n inputs; each of s models is right on an input with probability 0.6 under a
first attack, and a second attack breaks a share `rate` of those more (each model, each input,
independently: models that disagree). The truth is 0.6 * rate for the difference, 0.6 for the
mean; a cell reports how often the 95% interval held it.

    python bench/bench_sanity_interval_coverage.py --trials 2000 --out bench/sanity-interval-coverage.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from swiglu_audit.verdicts.stats import fixed_models_difference, fixed_models_mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for s, n in [(1, 60), (1, 360), (2, 60), (2, 120), (3, 120), (3, 360), (5, 120)]:
        for rate in (0.02, 0.05, 0.2):
            held_difference = held_mean = 0
            for _ in range(args.trials):
                first = rng.random((s, n)) < 0.6
                second = first & ~(rng.random((s, n)) < rate)
                d = fixed_models_difference(first, second)
                held_difference += d.ci_low <= 0.6 * rate <= d.ci_high
                m = fixed_models_mean(first)
                held_mean += m.ci_low <= 0.6 <= m.ci_high
            rows.append({"models": s, "inputs": n, "rate": rate, "difference": held_difference / args.trials,
                         "mean": held_mean / args.trials})
            print(rows[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"trials": args.trials, "generator_seed": args.seed, "level": 0.95, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
