"""The plan's timed probes in a process of their own, for an audit whose workers do the work.

The probe trains a few steps of every model. The optimiser's first step imports torch._dynamo
(about 70 MB), and the steps leave their working memory to the allocator. Under xdist the
controller then waits for its workers for the rest of the audit, holding all of that: about
100 MB of the standard audit's 2 GB budget for the process tree (BENCHMARKS.md, sixteenth stop).
A child process times the models instead, hands their unit costs back in a file and exits; it
also keeps them in the cache for the day, as `timed_today` does in the audit's own process.

On a CPU, one child per worker (each at a worker's share of the cores, as the workers will run)
times its share of the models side by side: one child left every core but one idle while it timed
the ten models of the standard audit one after the other (37 s of a cold run, before any work).

    python -m swiglu_audit.planning.probe_apart FOLDER   (what `probe_apart` starts)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .plan import PROBE_ENV, UnitCosts, probe_key, timed_today

if TYPE_CHECKING:
    from ..session import AuditSession

TIMEOUT_S = 900
VALIDATION_ROWS = 64  # the contract check's probe batch reads 8


def probe_apart(audit: AuditSession, workers: int) -> tuple[dict[str, UnitCosts], str | None]:
    """The unit costs of the models the cache lacks for today, timed in child processes:
    ({model: its costs}, None), or what it could not time and why, in words: the plan then
    times those models in this process, as before. Never raises: a failure here only costs the
    memory it was meant to save."""
    if os.environ.get(PROBE_ENV):
        return {}, None  # given, not timed
    try:
        return _probe_apart(audit, workers)
    except Exception as exc:  # noqa: BLE001  (no temporary folder, a model that cannot be built, ...)
        return {}, f"{type(exc).__name__}: {exc}"


def _probe_apart(audit: AuditSession, workers: int) -> tuple[dict[str, UnitCosts], str | None]:
    missing, notes = [], []
    for name in audit.zoo.specs:
        try:
            if not audit.cache.contains(probe_key(audit, name, workers), kind="probe"):
                missing.append(name)
        except Exception as exc:  # noqa: BLE001  the plan reports a model that cannot be built itself
            notes.append(f"{name}: {type(exc).__name__}: {exc}")
    if not missing:
        return {}, "; ".join(notes) or None
    # on a GPU the children would share the device and time each other: one child there
    children = min(workers, os.cpu_count() or 1, len(missing)) if audit.device.type == "cpu" else 1
    # dealt in turn: the zoo lists its models family by family, so each child gets its share of
    # each family (within one)
    shares = [missing[k::children] for k in range(children)]
    data = _front(audit)
    costs: dict[str, UnitCosts] = {}
    with tempfile.TemporaryDirectory(prefix="swiglu-audit-probe-") as folder:  # mode 0700: this user's
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        started: list[tuple[list[str], Path, subprocess.Popen]] = []
        try:
            for k, names in enumerate(shares):
                share = Path(folder) / str(k)
                share.mkdir()
                request = {"config": audit.config, "data": data, "names": names, "workers": workers,
                           "threads": torch.get_num_threads(), "sys_path": list(sys.path)}
                with open(share / "request.pkl", "wb") as fh:
                    pickle.dump(request, fh)
                # stderr to a file: a child that says much never waits on a pipe the parent is not
                # reading yet (inside a timed region, that wait would be cached for the day)
                with open(share / "stderr", "wb") as err:
                    started.append((names, share, subprocess.Popen(
                        [sys.executable, "-m", __name__, str(share)], env=env, stdout=subprocess.DEVNULL,
                        stderr=err, start_new_session=True)))
            deadline = time.monotonic() + TIMEOUT_S  # one for all: they run side by side
            for names, share, child in started:
                notes += _collect(names, share, child, deadline, costs)
        finally:  # whatever went wrong here, no child is left timing models in a removed folder
            for _, _, child in started:
                if child.poll() is None:
                    _kill(child)
    return costs, "; ".join(notes) or None


def _collect(names: list[str], share: Path, child: subprocess.Popen, deadline: float,
             costs: dict[str, UnitCosts]) -> list[str]:
    """One child's unit costs into `costs`; what went wrong, in words, naming its models."""
    which = ", ".join(names)
    try:
        child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(child)
        return [f"the probe's process for {which} did not finish in {TIMEOUT_S} s"]
    said = (share / "stderr").read_bytes().decode(errors="replace").strip()[-500:]
    if child.returncode != 0:
        return [f"the probe's process for {which} failed: {said}"]
    try:
        timed = pickle.loads((share / "costs.pkl").read_bytes())  # written by our own child, in our folder
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        return [f"the probe's process for {which} left no costs ({type(exc).__name__}){': ' + said if said else ''}"]
    costs.update(timed)
    left = [name for name in names if name not in timed]
    return [f"not timed there: {said or ', '.join(left)}"] if left else []


def _kill(child: subprocess.Popen) -> None:
    """The child and anything it started (its own session), then reaped."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (OSError, AttributeError):  # gone already, or no process groups here
        child.kill()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _front(audit: AuditSession):
    """The data cut to what the probes read: the training batches the stacking choice times and
    the trigger scan's inputs from the front of the training split, the attack set from the front
    of the test split, a few validation rows for the model contract's check; no live data, and no
    fingerprint (nothing the child computes is cached under the data's identity)."""
    from ..measure.poisoning import SCAN_INPUTS
    from ..training.stack_choice import LONG_STEPS

    data, config = audit.data, audit.config
    # the stacking choice's timed trainings read LONG_STEPS batches
    train = max(LONG_STEPS * config.training.batch_size, SCAN_INPUTS)
    return dataclasses.replace(
        data, x_train=data.x_train[:train].clone(), y_train=data.y_train[:train].clone(),
        x_val=data.x_val[:VALIDATION_ROWS].clone(), y_val=data.y_val[:VALIDATION_ROWS].clone(),
        x_test=data.x_test[:config.adversarial.n_examples].clone(), y_test=data.y_test[:config.adversarial.n_examples].clone(),
        x_live=None, y_live=None, live_hash=None, hashes={}, train_source_index=None, groups_test=None)


def main(folder: str) -> int:
    from ..session import AuditSession

    # the parent's own request, in a folder only this user can read: not data from elsewhere
    request = pickle.loads((Path(folder) / "request.pkl").read_bytes())
    sys.path[:] = request["sys_path"]
    torch.set_num_threads(request["threads"])  # the parent's: part of the cached entries' keys
    audit = AuditSession(request["config"], data=request["data"])
    costs, failed = {}, []
    for name in request["names"]:
        try:
            costs[name] = timed_today(audit, name, request["workers"])
        except Exception as exc:  # noqa: BLE001  the parent times it again, and its plan says why it failed
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    with open(Path(folder) / "costs.pkl", "wb") as fh:
        pickle.dump(costs, fh)
    if failed:
        print("\n".join(failed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
