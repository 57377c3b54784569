"""Stacked attacks (`swiglu_audit/methods/stacked_attacks.py`) against the same members attacked
one by one.

For each model family and FFN variant asked for, K models (each built under its seed and trained
briefly on digits, so that the attacks meet a model that is right on most inputs) are attacked
with each attack of the standard profile on the first `--examples` test inputs: one by one with
`run_attack` (each member under its own seed, as the audit does where a model does not stack) and
all at once with `attack_members` (one attack on their `StackedMembers`, seeded as the first
member, as the audit does where the model stacks). Reported per attack: the seconds of each
(median of `--repeats` runs, in alternating order), their ratio, and each member's robust accuracy
lone and stacked (the stacked members share one random stream, so those agree statistically;
FGSM, which draws nothing, agrees exactly). A family whose models cannot run stacked (the ViT on
a CPU: no vmap batching rule for its attention) gets one row that says why. The matmul rate of
the machine is measured in the same run (DESIGN.md section 7).

    python bench/bench_stacked_attacks.py --out bench/stacked-attacks-cpu.json [--families mlp,vit] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_audit import matmul_gflops, write_rows  # bench/ is on the path: the script's own folder

from swiglu_audit.methods.attack_registry import AttackParams
from swiglu_audit.methods.attacks import run_attack
from swiglu_audit.methods.stacked_attacks import attack_members
from swiglu_audit.methods.stacked_members import NotStackable, stack_for_attack
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

ATTACKS = ["fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "apgd_t", "square"]


def trained(family: str, ffn: str, seed: int, data, epochs: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family=family, ffn=ffn))
    train_model(model, data.x_train, data.y_train, Recipe(epochs=epochs), seed, torch.device("cpu"))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default="mlp")
    ap.add_argument("--variants", default="swiglu,relu")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--examples", type=int, default=360)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1: an xdist worker's share of 2 cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits_data()
    x, y = data.x_test[: args.examples], data.y_test[: args.examples]
    params = AttackParams(eps=0.1)  # the standard profile's settings (settings.toml [base.adversarial])
    seeds = list(range(args.members))
    rate_before = matmul_gflops()
    rows = []
    for family in args.families.split(","):
        for ffn in args.variants.split(","):
            models = [trained(family, ffn, s, data, args.epochs) for s in seeds]
            try:
                stacked = stack_for_attack(models, x[:8])
            except NotStackable as exc:
                rows.append({"family": family, "ffn": ffn, "stacked": False, "why": str(exc)})
                print(rows[-1], flush=True)
                continue
            for attack in args.attacks.split(","):
                lone_s, stacked_s = [], []
                for repeat in range(args.repeats):
                    for order in (("lone", "stacked") if repeat % 2 == 0 else ("stacked", "lone")):
                        started = time.perf_counter()
                        if order == "lone":
                            lone = [run_attack(m, attack, x, y, params, 10, s) for m, s in zip(models, seeds)]
                            lone_s.append(time.perf_counter() - started)
                        else:
                            together = attack_members(models, stacked, attack, x, y, params, 10, seeds[0])
                            stacked_s.append(time.perf_counter() - started)
                row = {"family": family, "ffn": ffn, "attack": attack, "members": args.members,
                       "lone_seconds": [round(v, 3) for v in lone_s],
                       "stacked_seconds": [round(v, 3) for v in stacked_s],
                       "lone_median": round(statistics.median(lone_s), 3),
                       "stacked_median": round(statistics.median(stacked_s), 3),
                       "speedup": round(statistics.median(lone_s) / statistics.median(stacked_s), 2),
                       "robust_accuracy_lone": [round(float(r["robust"].mean()), 4) for r in lone],
                       "robust_accuracy_stacked": [round(float(r["robust"].mean()), 4) for r in together],
                       "same_clean": all(bool((a["clean"] == b["clean"]).all()) for a, b in zip(lone, together))}
                rows.append(row)
                print(row, flush=True)
    write_rows(args.out, rows, rate_before, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
