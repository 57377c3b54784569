"""Harness overhead of one attack against a bare torchattacks script doing the same work.

Both sides attack the same trained model on the same examples in the same batches with the same
PGD settings and report robust accuracy (a clean forward pass, the attack, a forward pass on the
adversarial examples). The harness side goes through `swiglu_audit.methods.attacks.run_attack`,
which adds pass counting, budget verification and mode restoration. Runs alternate in ABBA order
(bare then harness, harness then bare, ...) after one warm-up of each, so that drift in machine
speed and cache warmth hit both sides alike; the medians are compared.

    python bench/bench_attack_overhead.py --family vit --repeats 9 --out bench/overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torchattacks

from swiglu_audit.methods.attack_registry import AttackParams
from swiglu_audit.methods.attacks import run_attack
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.specs import load_zoo_table
from swiglu_audit.training.train import Recipe, train_model


def bare_pgd(model, x, y, eps, steps, seed, batch_size):
    """What a user would write with torchattacks alone."""
    model.eval()
    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    torch.manual_seed(seed)
    robust = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        with torch.no_grad():
            clean = model(xb).argmax(1) == yb
        adv = attack(xb, yb)
        with torch.no_grad():
            robust += int(((model(adv).argmax(1) == yb) & clean).sum())
    return robust / len(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="vit", choices=["mlp", "vit"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    data = load_digits_data()
    torch.manual_seed(0)
    arch = load_zoo_table()["families"][args.family]
    model = build_model(ModelConfig(family=args.family, ffn="swiglu", **arch))
    train_model(model, data.x_train, data.y_train, Recipe(epochs=10), 0, torch.device("cpu"))
    x, y = data.x_test, data.y_test
    cfg = AttackParams(eps=args.eps, steps=args.steps)

    bare_times, harness_times, accs = [], [], set()

    def time_bare():
        t = time.perf_counter()
        accs.add(round(bare_pgd(model, x, y, args.eps, args.steps, 0, args.batch_size), 6))
        bare_times.append(time.perf_counter() - t)

    def time_harness():
        t = time.perf_counter()
        out = run_attack(model, "pgd", x, y, cfg, data.n_classes, seed=0, batch_size=args.batch_size)
        harness_times.append(time.perf_counter() - t)
        accs.add(round(float(out["robust"].mean()), 6))

    time_bare(), time_harness()  # warm-up, not counted
    bare_times.clear(), harness_times.clear()
    for i in range(args.repeats):  # ABBA order: neither side always runs first
        first, second = (time_bare, time_harness) if i % 2 == 0 else (time_harness, time_bare)
        first()
        second()
    bare, harness = statistics.median(bare_times), statistics.median(harness_times)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "family": args.family, "examples": len(x), "steps": args.steps, "repeats": args.repeats,
        "bare_median_s": round(bare, 4), "harness_median_s": round(harness, 4),
        "overhead": round(harness / bare - 1, 4),
        "same_robust_accuracy": len(accs) == 1, "robust_accuracy": sorted(accs),
        "bare_s": [round(t, 4) for t in bare_times], "harness_s": [round(t, 4) for t in harness_times],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
