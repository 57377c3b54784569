"""Stacked training (`training/stacked.py`) against the same seeds trained one by one.

For each FFN variant of the zoo's MLP and each number of seeds K, the same K models (each built
under its seed) are trained twice on digits with the standard recipe: one by one with
`train.train_model`, and as one stacked model with `stacked.train_stacked`. Reported: the
seconds of each (median of `--repeats` runs, in alternating order), their ratio, the largest
weight difference between a lone and a stacked member, whether each member saw exactly its own
batches (the two trainings' batch digests), and the final validation accuracies. The matmul
rate of the machine is measured in the same run (DESIGN.md section 7).

    python bench/bench_stacked.py --out bench/stacked-cpu.json [--epochs 30] [--members 3,5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_audit import matmul_gflops  # bench/ is on the path: the script's own folder

from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.stacked import train_stacked
from swiglu_audit.training.train import Recipe, train_model


def build(ffn: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(family="mlp", ffn=ffn))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--members", default="3,5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="swiglu,geglu,reglu,gelu,relu")
    args = ap.parse_args()
    data = load_digits_data()
    cpu = torch.device("cpu")
    recipe = Recipe(epochs=args.epochs)
    train_model(build("relu", 99), data.x_train, data.y_train, Recipe(epochs=1), 99, cpu)  # warm-up
    rate_before = matmul_gflops()
    rows = []
    for ffn in args.variants.split(","):
        for k in map(int, args.members.split(",")):
            seeds = list(range(k))
            lone_s, stacked_s = [], []
            for repeat in range(args.repeats):
                for order in (("lone", "stacked") if repeat % 2 == 0 else ("stacked", "lone")):
                    models = [build(ffn, s) for s in seeds]
                    started = time.perf_counter()
                    if order == "lone":
                        records = [train_model(m, data.x_train, data.y_train, recipe, s, cpu, data.x_val, data.y_val)
                                   for m, s in zip(models, seeds)]
                        lone_s.append(time.perf_counter() - started)
                        lone_models, lone_records = models, records
                    else:
                        records = train_stacked(models, [data.x_train] * k, [data.y_train] * k, recipe, seeds, cpu,
                                                data.x_val, data.y_val)
                        stacked_s.append(time.perf_counter() - started)
                        stacked_models, stacked_records = models, records
            diff = max(float((a - b).abs().max()) for m1, m2 in zip(lone_models, stacked_models)
                       for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
            row = {"ffn": ffn, "members": k, "epochs": args.epochs,
                   "lone_seconds": [round(v, 3) for v in lone_s], "stacked_seconds": [round(v, 3) for v in stacked_s],
                   "lone_median": round(statistics.median(lone_s), 3),
                   "stacked_median": round(statistics.median(stacked_s), 3),
                   "speedup": round(statistics.median(lone_s) / statistics.median(stacked_s), 2),
                   "max_weight_difference": diff,
                   "same_batches": [a["batch_digest"] == b["batch_digest"] for a, b in zip(lone_records, stacked_records)],
                   "val_accuracy_lone": [r["history"][-1]["val_accuracy"] for r in lone_records],
                   "val_accuracy_stacked": [r["history"][-1]["val_accuracy"] for r in stacked_records]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "matmul_gflops_before": round(rate_before, 1), "matmul_gflops_after": round(matmul_gflops(), 1)},
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
