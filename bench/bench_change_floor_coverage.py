"""Coverage of the candidate-vs-baseline interval of a change (int8 or float16 against float32,
say: `stats.change_comparison`) where few inputs change, by simulation.

Written to weigh a change to `stats._t_interval` (twenty-third stop): read a floor at the
inputs' df rather than the df of the parts as measured (2 with 3 seeds). It narrowed the
floor-bound intervals by 30-40% with no loss of coverage there, but added up to 1.1 points of
misses where the seeds' part is large and was measured small (`means`, seed_sd 0.7-1.0), cells
that already miss more than 5%. It was not adopted (`change-floor-coverage.json`: the rule kept;
`change-floor-coverage-inputs-df-rule.json`: the rule weighed, run from a checkout that had it).

Each arm: 3 seeds x 360 inputs, all right before the change; a share of the population's inputs
is fragile in that architecture, and each seed's model flips a random half to all of them; a few
stray flips per seed on top. The truth is the expected change difference. Where almost nothing
flips, the interval rests on the floor of changed inputs (two pseudo-inputs among n + 4); this
counts how often the 95% interval misses the truth, and its median width.

It also draws rare 0/1 outcomes for `stats.mean_interval` (a class's robust accuracy near 0),
where the floor of two pseudo-inputs binds, and rates near 1. At the twenty-fourth stop these
cells weighed the log-odds reach of `mean_interval`'s end toward 1/2 (`_reach_toward_the_middle`):
`change-floor-coverage-before-log-odds.json` is the run before it (the new cells' rows added by
running that state's stats.py), `change-floor-coverage.json` the run after.

    python bench/bench_change_floor_coverage.py --trials 1000 --out bench/change-floor-coverage.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from swiglu_audit.verdicts import stats  # noqa: E402

CELLS = [(0.0, 0.0, 0.0), (0.005, 0.0, 0.0), (0.005, 0.005, 0.0005), (0.01, 0.0, 0.002),
         (0.02, 0.01, 0.001), (0.05, 0.03, 0.002)]


def cell(rng, fragile_a: float, fragile_b: float, stray: float, trials: int, seeds: int = 3, n: int = 360) -> dict:
    misses, widths = 0, []
    for _ in range(trials):
        arms = []
        for fragile in (fragile_a, fragile_b):
            before = np.ones((seeds, n), dtype=bool)
            shared = rng.random(n) < fragile
            flips = rng.random((seeds, n)) < rng.uniform(0.5, 1.0, (seeds, 1))  # each seed flips a share of them
            after = before & ~(shared[None, :] & flips) & ~(rng.random((seeds, n)) < stray)
            arms.append((before, after))
        c = stats.change_comparison(arms[0][0], arms[0][1], arms[1][0], arms[1][1])
        truth = 0.75 * (fragile_b - fragile_a)  # the strays cancel; a seed flips 75% of its fragile inputs on average
        misses += not c.ci_low <= truth <= c.ci_high
        widths.append(c.ci_high - c.ci_low)
    return {"fragile_a": fragile_a, "fragile_b": fragile_b, "stray": stray, "trials": trials,
            "miss_rate": misses / trials, "median_width": round(float(np.median(widths)), 4)}


MEAN_CELLS = [(0.02, 0.0, 36), (0.02, 0.5, 36), (0.05, 0.5, 36), (0.02, 1.0, 36), (0.01, 1.0, 120),
              (0.05, 1.0, 120), (0.1, 0.7, 36),
              # added at the twenty-fourth stop, with the log-odds reach of `mean_interval`: the
              # rare rates over 360 inputs, and rates near 1 (a clean accuracy)
              (0.05, 0.0, 360), (0.02, 1.0, 360), (0.05, 1.0, 360), (0.95, 1.0, 360), (0.98, 0.5, 360)]


def mean_cell(rng, rate: float, seed_sd: float, n: int, trials: int, seeds: int = 3) -> dict:
    """`stats.mean_interval` of rare 0/1 outcomes (a class's robust accuracy near 0, say): a
    logistic model with input difficulty (sd 1) and a per-seed shift (`seed_sd`); the truth is
    the population's mean over inputs and seeds."""
    base = np.log(rate / (1 - rate))
    difficulty, shift = rng.normal(0, 1.0, 20000), rng.normal(0, seed_sd, 200)
    truth = float(np.mean(1 / (1 + np.exp(-(base + difficulty[:, None] + shift[None, :])))))
    below, above, widths = 0, 0, []
    for _ in range(trials):
        logits = base + rng.normal(0, 1.0, n)[None, :] + rng.normal(0, seed_sd, seeds)[:, None]
        e = stats.mean_interval(rng.random((seeds, n)) < 1 / (1 + np.exp(-logits)))
        below, above = below + (truth < e.ci_low), above + (truth > e.ci_high)
        widths.append(e.ci_high - e.ci_low)
    return {"rate": rate, "seed_sd": seed_sd, "n": n, "truth": round(truth, 4), "trials": trials,
            "miss_rate": (below + above) / trials, "truth_below_low": below / trials,
            "truth_above_high": above / trials, "median_width": round(float(np.median(widths)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = [cell(rng, *c, args.trials) for c in CELLS]
    means = [mean_cell(rng, *c, 2 * args.trials) for c in MEAN_CELLS]
    for row in rows + means:
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"seed": args.seed, "changes": rows, "means": means}, indent=1) + "\n")


if __name__ == "__main__":
    main()
