"""Where the audit's process tree holds its memory, process by process, over time.

    python bench/memory_timeline.py [--profile standard] OUT_FOLDER [PYTEST_ARGS ...]   (e.g. -n 2)

Runs `python -m pytest --swiglu-audit` (with the given extra arguments, e.g. `-n 2`) in an empty
folder with an empty cache under OUT_FOLDER, and every half second writes each process of its tree
(pid, command, RSS and PSS in MB, from /proc/PID/smaps_rollup) as one JSON line to
OUT_FOLDER/memory.jsonl. At the end it prints the moment of the largest RSS sum, with each
process's share, and the largest PSS sum. Linux only. `bench_audit.py` gives the headline peaks;
this shows which process holds what, and when.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def tree(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out = [root]
    for pid in out:
        out += [child for child, parent in parents.items() if parent == pid]
    return out


def sample(root: int) -> list[list]:
    rows = []
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in fh if line.split(":")[0] in ("Rss", "Pss")}
            with open(f"/proc/{pid}/cmdline") as fh:
                command = fh.read().replace("\0", " ")[:80]
        except (OSError, ValueError, IndexError):
            continue
        rows.append([pid, command, fields.get("Rss", 0) // 1024, fields.get("Pss", 0) // 1024])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--profile", default="standard")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest, e.g. -n 2")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "work").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SWIGLU_AUDIT_CACHE"] = str(out / "cache")
    cmd = [sys.executable, "-m", "pytest", "--swiglu-audit", f"--swiglu-audit-profile={args.profile}",
           "-p", "no:cacheprovider", "-q", *args.pytest_args]
    started = time.time()
    with open(out / "pytest.txt", "w") as log, open(out / "memory.jsonl", "w") as timeline:
        proc = subprocess.Popen(cmd, cwd=out / "work", env=env, stdout=log, stderr=subprocess.STDOUT)
        peak_rss, peak_pss = (0, None, []), 0
        while proc.poll() is None:
            rows = sample(proc.pid)
            at = round(time.time() - started, 1)
            timeline.write(json.dumps({"t": at, "procs": rows}) + "\n")
            rss, pss = sum(r[2] for r in rows), sum(r[3] for r in rows)
            if rss > peak_rss[0]:
                peak_rss = (rss, at, rows)
            peak_pss = max(peak_pss, pss)
            time.sleep(0.5)
    print(f"{time.time() - started:.1f} s; largest RSS sum {peak_rss[0]} MB at {peak_rss[1]} s "
          f"({', '.join(f'{r[2]} MB' for r in peak_rss[2])}); largest PSS sum {peak_pss} MB")


if __name__ == "__main__":
    main()
