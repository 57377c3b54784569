"""What the central-window lookups (methods/shifted_copies.py) cost at the edge of their budget:
2,000 CIFAR-sized test images (the shapes family of bench_leakage.py) against 10,000 training
images, the leak rule's index built and queried once with the windows and once without (the
budget set to 0), in one process; the matmul rate measured first.

    python bench/bench_window_search.py --out bench/window-search-time.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_leakage import shapes_images  # noqa: E402

from swiglu_audit.methods import integrity, shifted_copies  # noqa: E402


def matmul_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 1024 ** 3 / (time.perf_counter() - started) / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    x = torch.from_numpy(shapes_images(12000, 5))
    train, test = x[:10000], x[10000:]
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                 "matmul_gflops_before": round(matmul_gflops(), 1)}
    for label, limit in (("1-pixel rule alone", 0.0), ("with the central windows", shifted_copies.SEARCH_BUDGET)):
        started = time.perf_counter()
        index = integrity.NearDuplicateIndex(train, shift_budget=limit)
        pairs = index.pairs(test)
        search = index.shift_search(len(test))
        out[label] = {"seconds": round(time.perf_counter() - started, 1), "pairs": len(pairs),
                      "shift_search": None if search is None else search.to_dict()}
        print(label, out[label], flush=True)
    out["matmul_gflops_after"] = round(matmul_gflops(), 1)
    print(json.dumps(out))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
