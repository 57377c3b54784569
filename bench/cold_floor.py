"""How much of a cold audit is arithmetic: the floating-point operations of every piece of work the
audit declares (each job's `Work`: trainings, attack passes, other passes, the trigger scan's
steps), counted by torch's FlopCounterMode on one pass of each kind, divided by the machine's
measured matmul rate. That is a floor no stacking or batching can go under on this machine: it
says which parts are overhead (where stacking pays) and which are arithmetic (where it cannot).

    python bench/cold_floor.py --profile standard --out bench/cold-floor.json

The counts are the plan's (the same declared work); FLOPs are counted for the matmuls and
convolutions torch's counter knows (elementwise work is left out, so the floor is low, not high).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from swiglu_audit.config import build_config
from swiglu_audit.measure.poisoning import SCAN_INPUTS
from swiglu_audit.planning.plan import declared_work
from swiglu_audit.session import AuditSession


def matmul_rate() -> float:
    """GFLOP/s of a 1024 x 1024 float32 matmul at this process's threads (median of 5)."""
    a = torch.randn(1024, 1024)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10):
            a @ a
        times.append(time.perf_counter() - started)
    return 10 * 2 * 1024 ** 3 / sorted(times)[2] / 1e9


def flops(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def per_model(audit: AuditSession, name: str) -> dict:
    torch.manual_seed(0)
    model = audit.zoo.instantiate(audit.zoo.spec(name))
    data, config = audit.data, audit.config
    batch = config.training.batch_size
    x_batch, y_batch = data.x_train[:batch], data.y_train[:batch]
    attack_x = data.x_test[: config.adversarial.n_examples]

    def train_step():
        loss = torch.nn.functional.cross_entropy(model(x_batch), y_batch)
        loss.backward()

    def input_gradient(x):  # as an attack takes it: the gradient with respect to the inputs only
        def run():
            x_ = x.clone().requires_grad_(True)
            labels = data.y_test[: len(x)] if len(x) <= len(data.y_test) else torch.zeros(len(x), dtype=torch.long)
            params = [p for p in model.parameters() if p.requires_grad]
            for p in params:  # frozen weights: no weight-gradient work is counted
                p.requires_grad_(False)
            try:
                torch.nn.functional.cross_entropy(model(x_), labels).backward()
            finally:
                for p in params:
                    p.requires_grad_(True)
        return run

    def forward(x):
        def run():
            with torch.no_grad():
                model(x)
        return run

    step, grad_pass, fwd_pass = flops(train_step), flops(input_gradient(attack_x)), flops(forward(attack_x))
    fwd_example = fwd_pass / len(attack_x)
    scan_x = data.x_train[:SCAN_INPUTS].repeat(max(1, math.ceil(SCAN_INPUTS / len(data.x_train))), 1, 1, 1)[:SCAN_INPUTS]
    scan_step = flops(input_gradient(scan_x))
    out = {"training": 0.0, "attacks": 0.0, "other passes": 0.0, "trigger scan": 0.0}
    for work in declared_work(audit, name).values():
        for trainings in work.trainings.values():
            steps = trainings.count * trainings.epochs * trainings.steps_per_epoch(len(data.y_train), batch)
            out["training"] += steps * step
        out["attacks"] += work.attack_gradient_passes * grad_pass + work.attack_forward_passes * fwd_pass
        out["other passes"] += work.forward_examples * fwd_example + work.gradient_examples * 3 * fwd_example
        out["trigger scan"] += work.units.get("trigger scan", 0) * scan_step
    return {k: v / 1e9 for k, v in out.items()}  # GFLOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    audit = AuditSession(build_config({"device": "cpu"}, profile=args.profile))
    rate = matmul_rate()
    models = {name: per_model(audit, name) for name in audit.zoo.specs}
    totals = {part: sum(m[part] for m in models.values()) for part in next(iter(models.values()))}
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "matmul_gflops": round(rate, 1), "profile": args.profile,
              "gflop_by_model": {n: {k: round(v, 1) for k, v in m.items()} for n, m in models.items()},
              "gflop_total": {k: round(v, 1) for k, v in totals.items()},
              "floor_seconds_at_matmul_rate": {k: round(v / rate, 1) for k, v in totals.items()},
              "floor_seconds_total": round(sum(totals.values()) / rate, 1)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
