"""The stacking choice (training/stack_choice.time_stacking): what it decides and what it costs, for
the zoo's MLP and ViT on digits and the user-model benchmark's CNN on its CIFAR-sized data, at one
thread (an xdist worker's share of two cores), 3 seeds, twice each.

    python bench/bench_stacking_choice.py --out bench/stacking-choice-cpu.json
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_audit import matmul_gflops, write_rows  # bench/ is on the path: the script's own folder
from bench_stacked import user_project  # bench/ is on the path: the script's own folder

from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.stack_choice import time_stacking


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    rate_before = matmul_gflops()  # at the machine's threads, as every benchmark here states it
    torch.set_num_threads(1)
    cpu, digits = torch.device("cpu"), load_digits_data()
    user, cifar = user_project(2000, 500)
    cases = [("swiglu-mlp", lambda: build_model(ModelConfig(family="mlp", ffn="swiglu")), digits),
             ("relu-mlp", lambda: build_model(ModelConfig(family="mlp", ffn="relu")), digits),
             ("swiglu-vit", lambda: build_model(ModelConfig(family="vit", ffn="swiglu")), digits),
             ("swiglu-cnn", user["swiglu_cnn"], cifar), ("gelu-cnn", user["gelu_cnn"], cifar)]
    rows = []
    for label, make, data in cases:
        for _ in range(args.repeats):
            torch.manual_seed(0)
            model = make()
            started = time.perf_counter()
            choice = time_stacking(model, data.x_train[:384], data.y_train[:384], 3, 64, cpu)
            rows.append({"model": label, "seconds": round(time.perf_counter() - started, 2), "stack": choice.stack,
                         "why": choice.why, "lone_step_ms": round(choice.lone_step * 1e3, 2),
                         "stacked_step_ms": round(choice.stacked_step * 1e3, 2)})
            print(rows[-1], flush=True)
    torch.set_num_threads(threads)
    write_rows(args.out, rows, rate_before, threads_timed=1)


if __name__ == "__main__":
    main()
