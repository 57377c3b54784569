"""The jobs of one audit, as the suites declare them, and how one job runs in any process.

Each model has a training job (its clean trainings, stacked where they can be); each suite that
names a `prefetch` in the suite catalogue has a job per model it measures, which waits for that
model's training job, for the jobs of the suites it reads (catalogue `after`) and for its own
parts (catalogue `parts`: each seed's attacks; the poisoned trainings, then each scan of the power
panel), which run side by side after the training where they do not read each other. A job's cost
is its part of the plan's estimate for the model (`ModelPlan.seconds_by_job`; what the checks do
themselves is the plan's "checks" and no job's). Running a job fills the checkpoint cache; the
pytest items then read what it wrote and judge.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..util.memory import release_freed_memory
from .graph import Job, JobGraph

if TYPE_CHECKING:
    from ..config import AuditConfig
    from ..session import AuditSession

TRAINING = "training"


def training_job_id(model: str) -> str:
    return f"{TRAINING}:{model}"


def audit_graph(audit: AuditSession, plan: dict | None, needs: dict[str, set[str]] | None = None) -> JobGraph:
    """The jobs of this audit: per model, its training and each measuring suite's job. `needs`:
    model -> the suites its selected checks belong to (every prefetching suite when None);
    `plan`: the plan's dictionary, for each job's estimated seconds (0 without it)."""
    from ..checks.suite_catalog import SUITES, job_suites
    from ..measure import declared
    from ..training.planned import part_job

    suites = set(job_suites())  # a suite whose prefetch keeps its results in memory (drift) has no job
    parts_of = declared("parts")
    per_model = {m["name"]: m.get("seconds_by_job", {}) for m in (plan or {}).get("models", [])}
    jobs = []
    for name in (needs if needs is not None else audit.zoo.specs):
        seconds = per_model.get(name, {})
        stack = audit.zoo.stacks(name)  # the plan's (its probe's) where it followed it; a worker follows this
        jobs.append(Job(training_job_id(name), name, TRAINING, seconds.get(TRAINING, 0.0),
                        cached=_clean_cached(audit, name), stack=stack))
        measured = suites & (needs[name] if needs is not None else suites)
        for suite in sorted(measured):
            # after the model's training, and after the jobs whose results it reads (deployment
            # replays the adversarial suite's worst-case examples)
            after = tuple(f"{other}:{name}" for other in SUITES[suite].after if other in measured)
            # its parts first, side by side (each seed's attacks); the rest waits for them
            declared_parts = parts_of[suite](audit, name) if suite in parts_of else []
            parts = [p.name for p in declared_parts]
            for p in declared_parts:  # after the training, and after the parts it reads
                jobs.append(Job(f"{part_job(suite, p.name)}:{name}", name, suite, seconds.get(part_job(suite, p.name), 0.0),
                                deps=(training_job_id(name), *(f"{part_job(suite, a)}:{name}" for a in p.after)),
                                part=p.name, stack=stack))
            jobs.append(Job(f"{suite}:{name}", name, suite, seconds.get(suite, 0.0),
                            deps=(training_job_id(name), *after,
                                  *(f"{part_job(suite, part)}:{name}" for part in parts)), stack=stack))
    return JobGraph(jobs)


def _clean_cached(audit: AuditSession, name: str) -> bool:
    """Every seed's clean checkpoint of `name` is in the cache (or it has pretrained weights)."""
    import torch

    spec = audit.zoo.spec(name)
    if spec.weights:
        return True
    try:
        torch.manual_seed(0)
        model = audit.zoo.instantiate(spec)
    except Exception:  # noqa: BLE001  the training job meets the error and the model's checks report it
        return False
    return all(audit.cache.contains(audit.zoo.training_key(spec, seed, "clean", model))
               for seed in audit.config.seeds)


_SESSIONS: dict[str, AuditSession] = {}  # one session per configuration and worker process


def attempts_folder(config: AuditConfig, run_id: str) -> Path:
    """Where one executor run notes each start of each of its jobs, in the cache folder every
    worker shares (removed when the run ends)."""
    return Path(config.cache_dir) / "jobs" / run_id


def _note_start(config: AuditConfig, run_id: str, job: Job) -> Callable[[], int]:
    """Note this start of `job` where every worker of the run can see it (the local cache folder,
    or the shared store when the cache is on one); return how to count the starts so far."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job.id)
    if config.cache_url:
        from ..training.shared_store import SharedStore

        store, folder = SharedStore(config.cache_url), f"jobs/{run_id}/{name}"
        store.note(f"{folder}/{os.getpid()}-{uuid.uuid4().hex[:8]}", platform.node())
        return lambda: len(store.listing(folder))
    attempts = attempts_folder(config, run_id) / f"{name}.attempts"
    attempts.parent.mkdir(parents=True, exist_ok=True)
    with open(attempts, "a") as log:  # one line per start: its process id
        log.write(f"{os.getpid()}\n")
    return lambda: len(attempts.read_text().split())


def forget_attempts(config: AuditConfig, run_id: str) -> None:
    """Remove one run's notes of its jobs' starts (the run has read them)."""
    shutil.rmtree(attempts_folder(config, run_id), ignore_errors=True)
    if config.cache_url:
        from ..training.shared_store import SharedStore

        SharedStore(config.cache_url).remove_folder(f"jobs/{run_id}")


def run_job(config: AuditConfig, job: Job, run_id: str, threads: int = 0, *_after) -> dict:
    """Run one job in this process (a Ray worker, or the audit's own): train or measure, and so
    fill the cache. `run_id` names the executor's run: each start of the job is noted under it
    (one line per attempt, its process id), so a job that Ray ran again after its worker died
    says so. `_after`: the results of the jobs it waits for (an executor passes them so that it
    starts after them). An error is returned, not raised: the checks that need the job meet the
    same error and report it as their ERROR findings, once each, as without executors."""
    wall = time.time()
    if config.cache_url:  # this node's copy of the shared cache, wherever the driver keeps its own
        from ..config import mirror_dir

        config = dataclasses.replace(config, cache_dir=mirror_dir(config.cache_url))
    attempts = _note_start(config, run_id, job)  # first of all: a worker that dies later has still said it started

    waited = [r for r in _after if isinstance(r, dict) and r.get("error")]
    if waited:  # its model could not be trained: the same error, without training it again here
        return {"id": job.id, "seconds": 0.0, "error": f"waits for {waited[0]['id']}, which failed: {waited[0]['error']}",
                "trained": 0, "pid": os.getpid(), "attempts": attempts(), "started": wall, "ended": time.time()}

    import torch

    from ..measure import prefetchers
    from ..session import AuditSession

    root = str(config.project_root.resolve())
    if root not in sys.path:  # the user's dataset and model factories, as pytest's rootdir gives them
        sys.path.insert(0, root)
    if threads:
        torch.set_num_threads(threads)
    key = repr(config)
    if key not in _SESSIONS:  # data loaded once per worker process, not once per job
        _SESSIONS[key] = AuditSession(config)
    audit = _SESSIONS[key]
    if job.stack is not None:  # train, and read the job's parts, as the graph's builder chose
        audit.zoo.follow_choice(job.model, job.stack)
    started, before = time.monotonic(), audit.cache.stats.misses
    error = None
    try:
        if job.suite == TRAINING:
            audit.zoo.models(job.model)
        elif job.part:
            from ..measure import declared

            parts = {p.name: p for p in declared("parts")[job.suite](audit, job.model)}
            parts[job.part].run()
        else:
            prefetchers()[job.suite](audit, job.model)
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
    finally:
        audit.forget_results()  # a long-lived worker keeps the data, not every job's models
        # ... nor the memory they held, which the allocator would keep (a trim alone: a full
        # collection, about 0.1 s, after each of the standard audit's 155 jobs would add up)
        release_freed_memory(collect=False)
    return {"id": job.id, "seconds": round(time.monotonic() - started, 3), "error": error,
            "trained": audit.cache.stats.misses - before, "pid": os.getpid(),
            "attempts": attempts(), "started": wall, "ended": time.time()}
