"""One suite's job on a few of the zoo's models, timed alone: the models trained first (not timed),
then the suite's prefetch (what its job in the audit's graph runs) on an empty results cache.

    python bench/bench_suite_job.py --suite ood --models swiglu-mlp,swiglu-vit --threads 1 --out F

To compare two states of the code, run it from a checkout of each (PYTHONPATH=<checkout>) in
turns. `--threads 1` is an xdist worker's share of a 2-core machine. The matmul rate is recorded
before and after (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import write_rows, zoo_audit_on_empty_cache  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True)
    ap.add_argument("--models", default="swiglu-mlp,swiglu-vit")
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from swiglu_audit.measure import prefetchers

    rows = []
    with zoo_audit_on_empty_cache(args.profile, args.threads) as (audit, rate_before):
        for name in args.models.split(","):
            audit.zoo.models(name)
            started = time.perf_counter()
            prefetchers()[args.suite](audit, name)
            rows.append({"suite": args.suite, "model": name, "seconds": round(time.perf_counter() - started, 2)})
            print(rows[-1], flush=True)
    checkout = Path(sys.modules["swiglu_audit"].__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    write_rows(args.out, rows, rate_before, threads=args.threads, profile=args.profile, commit=commit)


if __name__ == "__main__":
    main()
