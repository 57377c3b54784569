"""The standard ensemble's Linf worst case side by side with torchattacks' standard AutoAttack.

For every model of the built-in zoo (standard profile), on the same test examples and the same
training seed: robust accuracy under the standard profile's Linf attacks (the per-example worst
case the audit reports as `worst_case_robust_accuracy[...][linf]`), under AutoAttack(version=
"standard") at the same eps, and under both together; the time each took; and how many examples
AutoAttack broke that the ensemble called robust. Checkpoints come from the audit's cache (a
standard audit run beforehand fills it; missing ones are trained).

    python bench/bench_autoattack.py --cache-dir DIR --seeds 0 --out bench/autoattack-standard.json

The machine's matmul rate is measured in the same run (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from swiglu_audit.config import build_config
from swiglu_audit.methods.attack_registry import AttackParams, threat_attacks
from swiglu_audit.methods.attacks import run_attack, worst_case
from swiglu_audit.session import AuditSession


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--n-examples", type=int, default=None, help="default: the profile's")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    config = build_config({}, profile="standard", cache_dir=args.cache_dir, seeds=args.seeds)
    audit = AuditSession(config)
    cfg = config.adversarial
    n = args.n_examples or cfg.n_examples
    x, y = audit.data.x_test[:n], audit.data.y_test[:n]
    linf = threat_attacks(cfg.attacks, "linf")
    names = [m for m in args.models.split(",") if m] or sorted(audit.zoo.specs)
    rows = []
    for name in names:
        for trained in audit.zoo.models(name):
            seed = trained.seed or 0
            started = time.perf_counter()
            runs = {a: run_attack(trained.module, a, x, y, AttackParams.of(cfg), audit.data.n_classes, seed) for a in linf}
            ensemble_seconds = time.perf_counter() - started
            ensemble, _, _ = worst_case({a: r["robust"] for a, r in runs.items()}, runs[linf[0]]["clean"])
            started = time.perf_counter()
            aa = run_attack(trained.module, "autoattack", x, y, AttackParams.of(cfg), audit.data.n_classes, seed)
            aa_seconds = time.perf_counter() - started
            both = ensemble & aa["robust"]
            rows.append({
                "model": name, "seed": seed, "n_examples": int(n), "eps": cfg.eps,
                "clean": float(runs[linf[0]]["clean"].mean()),
                "ensemble_linf": float(ensemble.mean()), "autoattack": float(aa["robust"].mean()),
                "both": float(both.mean()), "gap_ensemble_minus_autoattack": float(ensemble.mean() - aa["robust"].mean()),
                "broken_by_autoattack_only": int((ensemble & ~aa["robust"]).sum()),
                "broken_by_ensemble_only": int((aa["robust"] & ~ensemble).sum()),
                "ensemble_seconds": round(ensemble_seconds, 2), "autoattack_seconds": round(aa_seconds, 2),
                "per_attack": {a: float(r["robust"].mean()) for a, r in runs.items()},
            })
            print(json.dumps(rows[-1]), flush=True)
    gaps = [r["gap_ensemble_minus_autoattack"] for r in rows]
    out = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "torch_threads": torch.get_num_threads(), "matmul_gflops": round(matmul_gflops(), 1),
                       "torch": torch.__version__},
           "ensemble": linf, "rows": rows,
           "max_gap": max(gaps), "median_gap": float(np.median(gaps)),
           "ensemble_seconds_total": round(sum(r["ensemble_seconds"] for r in rows), 1),
           "autoattack_seconds_total": round(sum(r["autoattack_seconds"] for r in rows), 1)}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"max gap {out['max_gap']:+.4f}, median {out['median_gap']:+.4f}; ensemble {out['ensemble_seconds_total']} s, "
          f"AutoAttack {out['autoattack_seconds_total']} s")


if __name__ == "__main__":
    main()
