"""Stacked training (`training/stacked.py`) against the same seeds trained one by one.

For each FFN variant of the zoo's MLP and each number of seeds K, the same K models (each built
under its seed) are trained twice on digits with the standard recipe: one by one with
`train.train_model`, and as one stacked model with `stacked.train_stacked`. Reported: the
seconds of each (median of `--repeats` runs, in alternating order), their ratio, the largest
weight difference between a lone and a stacked member, whether each member saw exactly its own
batches (the two trainings' batch digests), and the final validation accuracies. The matmul
rate of the machine is measured in the same run (DESIGN.md section 7).

    python bench/bench_stacked.py --out bench/stacked-cpu.json [--epochs 30] [--members 3,5]
    python bench/bench_stacked.py --model usercnn --variants swiglu,gelu --epochs 5 --out bench/stacked-usercnn-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from bench_audit import matmul_gflops  # bench/ is on the path: the script's own folder
from bench_user_model import USER_PROJECT

from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.stacked import train_stacked
from swiglu_audit.training.train import Recipe, train_model


def build(ffn: str, seed: int, user: dict | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    if user is not None:  # the user-model benchmark's CNN: factories named "<variant>_cnn"
        return user[f"{ffn}_cnn"]()
    return build_model(ModelConfig(family="mlp", ffn=ffn))


def user_project(n_train: int, n_test: int) -> tuple[dict, SimpleNamespace]:
    """The user-model benchmark's module (its factories) and its training images, the last fifth
    held out for validation (the audit carves about as much)."""
    namespace: dict = {}
    exec(compile(USER_PROJECT.format(n_train=n_train, n_test=n_test), "usercnn", "exec"), namespace)  # noqa: S102  our own benchmark's text
    raw = namespace["make"]()
    x, y = torch.from_numpy(raw["x_train"]), torch.from_numpy(raw["y_train"]).long()
    cut = len(x) * 4 // 5
    return namespace, SimpleNamespace(x_train=x[:cut], y_train=y[:cut], x_val=x[cut:], y_val=y[cut:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--members", default="3,5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="swiglu,geglu,reglu,gelu,relu")
    ap.add_argument("--model", choices=("mlp", "usercnn"), default="mlp")
    ap.add_argument("--n-train", type=int, default=2000, help="usercnn: the benchmark's training images")
    args = ap.parse_args()
    user, data = user_project(args.n_train, 500) if args.model == "usercnn" else (None, load_digits_data())
    cpu = torch.device("cpu")
    recipe = Recipe(epochs=args.epochs)
    train_model(build(args.variants.split(",")[-1], 99, user), data.x_train, data.y_train, Recipe(epochs=1), 99, cpu)  # warm-up
    rate_before = matmul_gflops()
    rows = []
    for ffn in args.variants.split(","):
        for k in map(int, args.members.split(",")):
            seeds = list(range(k))
            lone_s, stacked_s = [], []
            for repeat in range(args.repeats):
                for order in (("lone", "stacked") if repeat % 2 == 0 else ("stacked", "lone")):
                    models = [build(ffn, s, user) for s in seeds]
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
            row = {"model": args.model, "ffn": ffn, "members": k, "epochs": args.epochs,
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
