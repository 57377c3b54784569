"""Where the job graph runs.

`local` is the audit's own processes: each pytest-xdist worker computes its share of the jobs
before its checks (`measure.prefetch_share`), and a lone process computes them as its checks ask.
`ray` submits every job that is not cached as a Ray task, in the graph's order, each waiting for
the jobs it depends on; the tasks fill the shared cache and the checks then only read and judge.
Ray is the engine ML teams already run on their clusters; this module only declares tasks to it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .audit_jobs import forget_attempts, run_job
from .graph import JobGraph

if TYPE_CHECKING:
    from ..config import AuditConfig

EXECUTORS = ("local", "ray")
# a task whose worker process dies (killed, out of memory, a lost node) is run again this many
# times; the cache's atomic writes mean a half-done job left nothing that a retry would read
RETRIES = 3
CPUS_PER_JOB_ENV = "SWIGLU_AUDIT_RAY_CPUS_PER_JOB"
GPU_SHARE_ENV = "SWIGLU_AUDIT_RAY_GPUS_PER_JOB"
_STARTING = threading.Lock()


def ray_module():
    try:
        import ray
    except ImportError:
        raise ConfigError("--swiglu-audit-executor=ray needs Ray: pip install 'swiglu-audit[ray]' "
                          "(or run with the default local executor)") from None
    return ray


def _resources(config: AuditConfig) -> tuple[int, float]:
    """(CPUs, GPUs) each job asks of Ray: one CPU, and on a CUDA audit a quarter of a GPU (the
    zoo's models are small: four jobs share one device), unless set in the environment."""
    try:
        cpus = int(os.environ.get(CPUS_PER_JOB_ENV, "1"))
        gpus = float(os.environ.get(GPU_SHARE_ENV, "0.25" if config.device == "cuda" else "0"))
        if cpus < 1 or not 0 <= gpus <= 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{CPUS_PER_JOB_ENV} must be a whole number of CPUs (1 or more) and {GPU_SHARE_ENV} "
                          "a share of one GPU between 0 and 1") from None
    return cpus, gpus


def run_on_ray(config: AuditConfig, graph: JobGraph, report: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Run every job of `graph` not known to be cached as a Ray task; return their results in
    the graph's order. Connects to the cluster named by RAY_ADDRESS, or starts a local one.
    `config.device` must be the device the audit resolved ("cpu", "cuda"): a worker that chose
    its own would write checkpoints under another precision's keys than the audit reads."""
    if config.device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"run_on_ray needs the audit's resolved device, not {config.device!r}")
    ray = ray_module()
    with _STARTING:  # two audits' executors in one process start (or join) one Ray instance
        if not ray.is_initialized():
            # workers import the user's dataset and model factories as the audit does: from its folder
            root = str(config.project_root.resolve())
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, ignore_reinit_error=True,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
    cpus, gpus = _resources(config)
    available_gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus if available_gpus else 0,
                                       max_retries=RETRIES, retry_exceptions=False)
    run_id = uuid.uuid4().hex[:12]
    refs: dict = {}
    for job_id in graph.order:
        job = graph.jobs[job_id]
        if job.cached:
            continue
        after = [refs[dep] for dep in job.deps if dep in refs]
        refs[job_id] = task.remote(config, job, run_id, cpus, *after)
    report(f"swiglu-audit: {len(refs)} of {len(graph.jobs)} jobs sent to Ray "
           f"({cpus} CPU{'s' if cpus > 1 else ''} each{f', {gpus:g} GPU' if gpus and available_gpus else ''})")
    results = []
    for job_id, ref in refs.items():
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayError as exc:  # retries spent, or the worker could not start the job
            results.append({"id": job_id, "seconds": 0.0, "error": f"{type(exc).__name__}: {exc}"[:2000],
                            "trained": 0, "pid": None, "attempts": None, "started": None, "ended": None})
    forget_attempts(config, run_id)
    failed = [r for r in results if r["error"]]
    retried = [r["id"] for r in results if (r["attempts"] or 0) > 1]
    report(f"swiglu-audit: {len(results) - len(failed)} jobs done on Ray, {sum(r['trained'] for r in results)} "
           f"models trained" + (f"; {len(retried)} run again after their worker died" if retried else "")
           + (f"; {len(failed)} failed (their checks report why)" if failed else ""))
    return results
