"""How often the scheduled audit's two-run test trips, on simulated nights: with no true change
(its false-alarm rate; the test is one-sided at 2.5%) and with true drops of 3 and 5 standard
deviations of the difference (its power). Each night is a (seeds x examples) matrix of per-example
outcomes with a seed effect, judged by the audit's own interval (`stats.mean_interval`) into a
Floor finding, and two nights are compared by `scheduled.regressions.compare`. The same nights are
compared twice: as saved today (each interval's degrees of freedom kept, Welch's t test) and as
saved before (no degrees of freedom: each half-width read with the normal quantile, and the normal
critical value).

    python bench/bench_gate_power.py [--nights 600] [--out bench/gate-power.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swiglu_audit.scheduled.regressions import compare  # noqa: E402
from swiglu_audit.verdicts.stats import mean_interval  # noqa: E402

SEED_SD, EXAMPLE_SD, EXAMPLES = 0.03, 0.05, 400  # seed-dominated: the case the audit's few seeds make hard


def night(rng, seeds: int, shift: float) -> dict:
    """One night's report holding one Floor finding (higher is better) with its interval's df."""
    values = 0.6 + shift + rng.normal(0, SEED_SD, (seeds, 1)) + rng.normal(0, EXAMPLE_SD, (seeds, EXAMPLES))
    e = mean_interval(values)
    finding = {"id": "adversarial.worst_case_robust_accuracy[m]", "check": "worst_case_robust_accuracy",
               "metric": "robust accuracy", "status": "PASS", "value": e.value, "ci_low": e.ci_low,
               "ci_high": e.ci_high, "ci_level": 0.95, "reason": "",
               "details": {"better": "higher", "judged": {"rule": "floor", "df": e.df}}}
    return {"findings": [finding], "policy": {"confidence_level": 0.95}, "environment": {}, "config": {}}


def without_df(doc: dict) -> dict:
    """The report as the previous version saved it: no degrees of freedom beside the interval."""
    old = copy.deepcopy(doc)
    for f in old["findings"]:
        f["details"]["judged"].pop("df", None)
    return old


def rates(seeds: int, drop_sds: float, nights: int, rng) -> dict:
    sd = SEED_SD * np.sqrt(2 / seeds)  # of the difference between two nights' seed means (seed part)
    today = before = 0
    for _ in range(nights):
        a, b = night(rng, seeds, 0.0), night(rng, seeds, -drop_sds * sd)
        today += bool(compare(a, b).regressions)
        before += bool(compare(without_df(a), without_df(b)).regressions)
    return {"seeds": seeds, "true_drop_sd": drop_sds, "nights": nights,
            "tripped_welch_t": today / nights, "tripped_normal_before": before / nights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows = [rates(s, d, args.nights, rng) for s in (2, 3, 5) for d in (0.0, 3.0, 5.0)]
    result = {"machine": platform.platform(), "nights_per_cell": args.nights, "generator_seed": args.seed,
              "noise": {"seed_sd": SEED_SD, "example_sd": EXAMPLE_SD, "examples": EXAMPLES},
              "one_sided_level": 0.025, "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    for r in rows:
        print(f"{r['seeds']} seeds, true drop {r['true_drop_sd']:g} SD: tripped {r['tripped_welch_t']:.3f} "
              f"(Welch t, today) vs {r['tripped_normal_before']:.3f} (normal, before)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
