"""The plan's timed probes in a process of their own, for an audit whose workers do the work.

The probe trains a few steps of every model. The optimiser's first step imports torch._dynamo
(about 70 MB), and the steps leave their working memory to the allocator. Under xdist the
controller then waits for its workers for the rest of the audit, holding all of that: about
100 MB of the standard audit's 2 GB budget for the process tree (BENCHMARKS.md, sixteenth stop).
A child process times the models instead and exits. Its unit costs reach the plan through the
cache: they are `timed_today`'s entries, which the plan then reads as on any later run that day.

    python -m swiglu_audit.planning.probe_apart REQUEST   (what `probe_apart` starts)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .plan import PROBE_ENV, probe_key, timed_today

if TYPE_CHECKING:
    from ..session import AuditSession

# Rows of each split the child gets: the probes read batches from the front (a training batch,
# the attack set, the trigger scan's inputs), so a large dataset is not copied whole
PROBE_ROWS = 4096
TIMEOUT_S = 900


def probe_apart(audit: AuditSession, workers: int) -> str | None:
    """Time, in a child process, the models whose unit costs the cache lacks for today. Returns
    None when the cache holds every model's costs afterwards (or nothing was to be timed), else
    why not, in words: the plan then times what is left in this process, as before."""
    if os.environ.get(PROBE_ENV):
        return None  # given, not timed
    try:
        missing = [name for name in audit.zoo.specs
                   if not audit.cache.contains(probe_key(audit, name, workers), kind="probe")]
    except Exception as exc:  # noqa: BLE001  a model that cannot be built: the plan reports it itself
        return f"{type(exc).__name__}: {exc}"
    if not missing:
        return None
    request = {"config": audit.config, "data": _front(audit.data), "names": missing, "workers": workers,
               "threads": torch.get_num_threads(), "sys_path": list(sys.path)}
    with tempfile.TemporaryDirectory(prefix="swiglu-audit-probe-") as folder:
        path = Path(folder) / "request.pkl"
        try:
            path.write_bytes(pickle.dumps(request))
        except Exception as exc:  # noqa: BLE001  a setting that does not pickle: time them here
            return f"the settings could not be handed to a child process ({type(exc).__name__}: {exc})"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            done = subprocess.run([sys.executable, "-m", __name__, str(path)], env=env, capture_output=True,
                                  timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the probe's process did not finish ({type(exc).__name__})"
    if done.returncode != 0:
        return f"the probe's process failed: {done.stderr.decode(errors='replace').strip()[-500:]}"
    left = [name for name in missing if not audit.cache.contains(probe_key(audit, name, workers), kind="probe")]
    return f"no unit costs cached for {', '.join(left)}" if left else None


def _front(data):
    """The data with each split cut to its first PROBE_ROWS rows, as plain in-memory tensors."""
    def cut(x):
        return None if x is None else x[:PROBE_ROWS].clone()
    return dataclasses.replace(data, **{split: cut(getattr(data, split)) for split in (
        "x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_live", "y_live")},
        train_source_index=None, groups_test=None)


def main(path: str) -> int:
    from ..session import AuditSession

    # the parent's own request, in a folder only this user can read: not data from elsewhere
    request = pickle.loads(Path(path).read_bytes())
    sys.path[:] = request["sys_path"]
    torch.set_num_threads(request["threads"])  # the parent's: part of the entries' keys
    audit = AuditSession(request["config"], data=request["data"])
    failed = []
    for name in request["names"]:
        try:
            timed_today(audit, name, request["workers"])
        except Exception as exc:  # noqa: BLE001  the parent's plan meets it again, and says so
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        print("\n".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
