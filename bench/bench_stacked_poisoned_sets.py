"""Poisoned-set trainings of one MLP: 8 sets x 3 seeds as 24 lone trainings, as 8 stacks of 3
(one set's seeds: the audit before it stacked across sets), and as one stack of 24 (every set:
`Zoo.train_together`), at one thread (an xdist worker's share of two cores); digits, each set a
tenth of its labels redrawn, 3 epochs, median of 3.

    python bench/bench_stacked_poisoned_sets.py --out bench/stacked-poisoned-sets-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_audit import matmul_gflops, write_rows  # bench/ is on the path: the script's own folder

from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.stacked import train_stacked
from swiglu_audit.training.train import Recipe, train_model

SETS, SEEDS = 8, 3


def poisoned_labels(y: torch.Tensor, n_sets: int) -> list[torch.Tensor]:
    """`n_sets` label sets, each with a tenth of its labels redrawn at random."""
    g = torch.Generator().manual_seed(0)
    return [torch.where(torch.rand(len(y), generator=g) < 0.1, torch.randint(0, 10, (len(y),), generator=g), y)
            for _ in range(n_sets)]


def members(ffn: str, labels: list[torch.Tensor]) -> list[tuple[torch.nn.Module, torch.Tensor, int]]:
    """(model built under its seed, its set's labels, seed), set by set."""
    out = []
    for y in labels:
        for seed in range(SEEDS):
            torch.manual_seed(seed)
            out.append((build_model(ModelConfig(family="mlp", ffn=ffn)), y, seed))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default="swiglu,relu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    rate_before = matmul_gflops()  # at the machine's threads, as every benchmark here states it
    torch.set_num_threads(1)
    cpu, data, recipe = torch.device("cpu"), load_digits_data(), Recipe(epochs=args.epochs)
    labels = poisoned_labels(data.y_train, SETS)

    def stack(chunk) -> None:
        train_stacked([m for m, _, _ in chunk], [data.x_train] * len(chunk), [y for _, y, _ in chunk], recipe,
                      [s for _, _, s in chunk], cpu, data.x_val, data.y_val)

    ways = {"lone": lambda ms: [train_model(m, data.x_train, y, recipe, s, cpu, data.x_val, data.y_val) for m, y, s in ms],
            f"stacks of {SEEDS}": lambda ms: [stack(ms[i:i + SEEDS]) for i in range(0, len(ms), SEEDS)],
            f"one stack of {SETS * SEEDS}": stack}
    rows = []
    for ffn in args.variants.split(","):
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):
            for way, run in ways.items():
                built = members(ffn, labels)
                started = time.perf_counter()
                run(built)
                seconds[way].append(round(time.perf_counter() - started, 2))
        rows.append({"ffn": ffn, "threads": 1, "epochs": args.epochs, "seconds": seconds,
                     "median": {way: statistics.median(v) for way, v in seconds.items()}})
        print(rows[-1], flush=True)
    torch.set_num_threads(threads)
    write_rows(args.out, rows, rate_before, threads_timed=1)


if __name__ == "__main__":
    main()
