"""A/A audits: identical architectures that differ only in initialisation, compared as if one
were a SwiGLU candidate and the others its baselines, through the user contract.

Every comparison here has a true difference of zero (the twins are the same architecture, trained
on the same data in the same order; only the initial weights differ), so it should PASS or stay
inconclusive, and FAIL in at most alpha of the comparisons. Reports the share that PASS, stay
inconclusive (WARN) and FAIL, and how many intervals exclude zero.

Each family is one audit: a candidate twin and `--baselines` baseline twins, the standard
profile's settings, its own project folder and cache.

    python bench/bench_aa_twins.py --families mlp,vit --baselines 3 --out bench/aa-twins.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TWINS = '''
import torch
from swiglu_audit.training.nn import ModelConfig, build_model

def _twin(family, offset, input_shape, n_classes):
    # the audit seeds torch before calling a factory; an offset per twin gives each its own
    # initial weights while data order and everything else stay the same
    torch.manual_seed(torch.initial_seed() + offset)
    return build_model(ModelConfig(family=family, ffn="swiglu", input_shape=input_shape, n_classes=n_classes))

def make_mlp_0(input_shape, n_classes): return _twin("mlp", 0, input_shape, n_classes)
def make_mlp_1(input_shape, n_classes): return _twin("mlp", 7919, input_shape, n_classes)
def make_mlp_2(input_shape, n_classes): return _twin("mlp", 15887, input_shape, n_classes)
def make_mlp_3(input_shape, n_classes): return _twin("mlp", 23873, input_shape, n_classes)
def make_vit_0(input_shape, n_classes): return _twin("vit", 0, input_shape, n_classes)
def make_vit_1(input_shape, n_classes): return _twin("vit", 7919, input_shape, n_classes)
def make_vit_2(input_shape, n_classes): return _twin("vit", 15887, input_shape, n_classes)
def make_vit_3(input_shape, n_classes): return _twin("vit", 23873, input_shape, n_classes)
'''


def project(folder: Path, family: str, baselines: int, seeds: str) -> None:
    (folder / "twins.py").write_text(TWINS)
    models = [f'[[tool.swiglu_audit.models]]\nname = "{family}-twin-0"\nfactory = "twins:make_{family}_0"\n'
              'role = "candidate"\n']
    models += [f'[[tool.swiglu_audit.models]]\nname = "{family}-twin-{i}"\nfactory = "twins:make_{family}_{i}"\n'
               for i in range(1, baselines + 1)]
    seed_line = 'seeds = "auto"' if seeds == "auto" else f"seeds = [{seeds}]"
    # users' models are poisoned (the cheaper way) when "user" is in the poisoning families: the MLP
    # twins are, the ViT twins are not (as the standard profile does not poison the ViTs: 7x the cost)
    poisoned = '["mlp", "user"]' if family == "mlp" else '["mlp"]'
    (folder / "pyproject.toml").write_text(
        f'[tool.swiglu_audit]\nprofile = "standard"\ninclude_builtin_zoo = false\n{seed_line}\n\n'
        f'[tool.swiglu_audit.poisoning]\nfamilies = {poisoned}\n\n' + "\n".join(models))


def run(family: str, baselines: int, seeds: str, workers: int, keep: Path | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"aa-{family}-"))
    project(folder, family, baselines, seeds)
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--swiglu-audit", "-n", str(workers), "-q", "-p",
                           "no:cacheprovider", "--swiglu-audit-cache-dir", str(folder / "cache")],
                          cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    report = folder / "reports" / "report.json"
    if not report.exists():
        raise SystemExit(f"the {family} A/A audit wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    doc = json.loads(report.read_text())
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"aa-{family}-report.json").write_text(report.read_text())
    comps = [f for f in doc["findings"] if len(f["models"]) == 2 and f["ci_low"] is not None]
    return {"family": family, "seconds": round(seconds, 1), "comparisons": len(comps),
            "statuses": dict(Counter(f["status"] for f in comps)),
            "fail_ids": [f["id"] for f in comps if f["status"] == "FAIL"],
            "excluding_zero": sum(not (f["ci_low"] <= 0 <= f["ci_high"]) for f in comps),
            "excluding_zero_ids": [f["id"] for f in comps if not (f["ci_low"] <= 0 <= f["ci_high"])],
            "by_check": {check: dict(Counter(f["status"] for f in comps if f["check"] == check))
                         for check in sorted({f["check"] for f in comps})},
            "auto_seeds": doc["summary"].get("auto_seeds")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="mlp,vit")
    p.add_argument("--baselines", type=int, default=3, help="baseline twins per family (1 to 3)")
    p.add_argument("--seeds", default="0,1,2", help='comma-separated seeds, or "auto"')
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", type=Path, help="copy each report.json here")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = [run(f, args.baselines, args.seeds, args.workers, args.keep) for f in args.families.split(",")]
    total = Counter()
    for r in rows:
        total.update(r["statuses"])
        print(json.dumps({k: v for k, v in r.items() if not k.endswith("_ids")}))
    n = sum(total.values())
    print(f"{n} A/A comparisons: " + ", ".join(f"{s} {total[s]} ({total[s] / n:.1%})" for s in ("PASS", "WARN", "FAIL")))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "total": dict(total), "machine": platform.platform(),
                                        "seeds": args.seeds}, indent=1))


if __name__ == "__main__":
    main()
