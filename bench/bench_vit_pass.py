"""What the zoo's ViT pass could still gain on this CPU, the largest share of a cold audit's time
(`bench/bench_job_costs.py`: its attacks and trainings), measured three ways:

- its attention as the model runs it (`F.scaled_dot_product_attention`) against the same
  arithmetic written out (two matmuls and a softmax), which `vmap` can batch;
- `torch.compile` of the model (inductor, with the machine's C++ compiler), with its compile time;
- with the written-out attention, its seeds trained stacked against one by one, timed by the rule
  the audit's own stacking choice uses (`training/stack_choice.time_stacking`).

    python bench/bench_vit_pass.py --threads 1 --out bench/vit-pass-cpu.json

An attack's pass is one forward and input-gradient pass over the attack set (360 digits inputs,
weights frozen); a training step is AdamW on a batch of 64. Medians of `--repeats` timings after
warm-up; the matmul rate is recorded before and after (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import matmul_gflops, write_rows  # noqa: E402

from swiglu_audit.training import nn as zoo_nn  # noqa: E402
from swiglu_audit.training.data import load_digits_data  # noqa: E402
from swiglu_audit.training.nn import ModelConfig, build_model  # noqa: E402
from swiglu_audit.training.stack_choice import time_stacking  # noqa: E402

VIT = ModelConfig(family="vit", ffn="swiglu", d_model=48, ffn_hidden=144, n_layers=2, n_heads=4, patch_size=2)


def written_out_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v


@contextlib.contextmanager
def attention(kind: str):
    """The zoo's blocks with their attention as given (`sdpa`) or written out (`written`)."""
    if kind == "sdpa":
        yield
        return
    original = zoo_nn.F

    class Functional:  # torch.nn.functional with one function replaced
        def __getattr__(self, name):
            return written_out_attention if name == "scaled_dot_product_attention" else getattr(F, name)

    zoo_nn.F = Functional()  # type: ignore[assignment]
    try:
        yield
    finally:
        zoo_nn.F = original


def median_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e3, 3)


def passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
           repeats: int) -> tuple[float, float]:
    """(ms of an attack's input-gradient pass, ms of a training step) of `model`."""
    frozen = [p.requires_grad_(False) for p in model.parameters()]
    model.eval()

    def attack_pass():
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), y), xa)

    attack = median_ms(attack_pass, repeats)
    for p in frozen:
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step():
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    return attack, median_ms(train_step, repeats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="an xdist worker's share of a 2-core machine: 1")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rate_before = matmul_gflops()
    data = load_digits_data()
    x, y = data.x_test[:360], data.y_test[:360]
    xb, yb = data.x_train[:64], data.y_train[:64]
    rows = []
    for kind in ("sdpa", "written"):
        with attention(kind):
            torch.manual_seed(0)
            attack, step = passes(build_model(VIT), x, y, xb, yb, args.repeats)
            rows.append({"attention": kind, "compiled": False, "attack_pass_ms": attack, "training_step_ms": step})
            print(rows[-1], flush=True)
    torch.manual_seed(0)
    model = build_model(VIT)
    compiled = torch.compile(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    started = time.perf_counter()  # the first attack pass compiles its forward and backward graphs
    xa = x.clone().requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(compiled(xa), y), xa)
    first = round(time.perf_counter() - started, 1)
    attack, step = passes(compiled, x, y, xb, yb, args.repeats)  # (training compiles again, untimed)
    rows.append({"attention": "sdpa", "compiled": True, "attack_pass_ms": attack, "training_step_ms": step,
                 "first_attack_pass_seconds": first})
    print(rows[-1], flush=True)
    with attention("written"):
        for members in (3, 5):
            torch.manual_seed(0)
            choice = time_stacking(build_model(VIT), data.x_train, data.y_train, members, 64, torch.device("cpu"))
            rows.append({"attention": "written", "stacking_members": members, "stack": choice.stack,
                         "why": choice.why, "lone_step_ms": round(choice.lone_step * 1e3, 3),
                         "stacked_step_ms": round(choice.stacked_step * 1e3, 3)})
            print(rows[-1], flush=True)
    write_rows(args.out, rows, rate_before, threads=args.threads)


if __name__ == "__main__":
    main()
