"""The trigger scan's optimisation (methods/backdoor_scan.py, step 1) at several numbers of classes
per pass, and several models' classes stacked in one pass, on the zoo's trained models.

For each model asked for (its seeds trained first, not timed, on an empty cache), the ten classes'
mask-and-pattern optimisations of its first seed run over the scan's inputs (120 other-class
inputs per class, its default 200 steps) in passes of 2, 4, 5 and 10 classes; then the three
seeds' 30 (model, class) groups run as one stacked optimisation (each group's rows routed through
its own seed's weights, methods/stacked_members.py) against the three seeds one after the other at
ten classes a pass. One CPU thread, as the scan runs; median of `--repeats` runs; the matmul rate
before and after (DESIGN.md section 7).

    python bench/bench_scan_groups.py --models swiglu-mlp,relu-mlp --out bench/scan-groups-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from bench_audit import write_rows, zoo_audit_on_empty_cache  # bench/ is on the path: the script's own folder

from swiglu_audit.methods import backdoor_scan
from swiglu_audit.methods.stacked_members import StackedMembers

CPU = torch.device("cpu")


def _class_inputs(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> list[torch.Tensor]:
    labels, rng = y.numpy(), np.random.default_rng(0)
    return [x[torch.from_numpy(rng.choice(np.flatnonzero(labels != c), backdoor_scan.inputs_per_step(),
                                          replace=False))] for c in range(n_classes)]


def _passes(model, inputs: list[torch.Tensor], per_pass: int, steps: int, n_classes: int) -> None:
    """Each input group's class optimised, `per_pass` groups a pass (group i targets class i mod n)."""
    targets = [i % n_classes for i in range(len(inputs))]
    for start in range(0, len(inputs), per_pass):
        chosen = slice(start, start + per_pass)
        backdoor_scan._reverse_engineer_group(model, inputs[chosen], targets[chosen], CPU, steps,
                                              backdoor_scan.MASK_COST, targets[chosen])


def _median(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def _row(name: str, models: list, inputs: list[torch.Tensor], steps: int, repeats: int, n_classes: int) -> dict:
    row = {"model": name, "seeds": len(models), "classes": len(inputs)}
    for per_pass in (2, 4, 5, len(inputs)):
        row[f"seconds_{per_pass}_classes_a_pass"] = _median(
            lambda per_pass=per_pass: _passes(models[0], inputs, per_pass, steps, n_classes), repeats)
    row["seconds_seeds_one_after_another"] = _median(
        lambda: [_passes(m, inputs, len(inputs), steps, n_classes) for m in models], repeats)
    stacked = StackedMembers(models).eval()
    route = torch.arange(len(models)).repeat_interleave(len(inputs) * len(inputs[0]))
    with stacked.routed(route):
        row["seconds_seeds_stacked"] = _median(
            lambda: _passes(stacked, inputs * len(models), len(inputs) * len(models), steps, n_classes), repeats)
    row["stacked_speedup"] = round(row["seconds_seeds_one_after_another"] / row["seconds_seeds_stacked"], 2)
    row["classes_per_group_now"] = backdoor_scan.classes_per_group(models[0], inputs, CPU)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="swiglu-mlp,relu-mlp")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    with zoo_audit_on_empty_cache("standard", 1) as (audit, rate_before):
        data = audit.data
        inputs = _class_inputs(data.x_train, data.y_train, data.n_classes)
        for name in args.models.split(","):
            models = [m.module.eval() for m in audit.zoo.models(name)]
            rows.append(_row(name, models, inputs, args.steps, args.repeats, data.n_classes))
            print(rows[-1], flush=True)
        write_rows(args.out, rows, rate_before, threads=torch.get_num_threads(), steps=args.steps)


if __name__ == "__main__":
    main()
