"""Fixtures the suites use. Registered by the plugin only when --swiglu-audit is on."""

from __future__ import annotations

import pytest

from ..config import OPT_EXECUTOR
from ..verdicts.risk import Finding, breaches_policy, capped_for_one_seed
from .relay import (
    COLLECTOR_KEY,
    CONFIG_KEY,
    CORES_SHARED_BY_KEY,
    DATA_KEY,
    ITEM_FINDINGS_KEY,
    ITEM_POLICY_FAILURE_KEY,
    SESSION_KEY,
    data_settings,
    progress_channel,
    xdist_workers,
)


@pytest.fixture(scope="session")
def audit(request: pytest.FixtureRequest, pytestconfig: pytest.Config):
    """This process's AuditSession: config, data, device, cache and the lazily trained zoo."""
    from ..session import AuditSession
    from ..training.progress import Progress

    index, workers = xdist_workers(pytestconfig)
    config = pytestconfig.stash[CONFIG_KEY]
    loaded, loaded_for = pytestconfig.stash.get(DATA_KEY, (None, None))  # the controller's setup check loaded it
    # a warm audit run here instead of on N workers keeps their share of the threads (pytest/warm.py)
    threads_of = pytestconfig.stash.get(CORES_SHARED_BY_KEY, workers)
    session = AuditSession(config, Progress(channel=progress_channel(pytestconfig)), threads_of,
                           data=loaded if loaded_for == data_settings(config) else None)
    pytestconfig.stash[SESSION_KEY] = session
    session.keep_replicates()
    if pytestconfig.getoption(OPT_EXECUTOR) == "ray":
        _run_jobs_on_ray(session, pytestconfig, measurement_needs(request.session.items))
    elif workers > 1:
        from ..measure import prefetch_share

        prefetch_share(session, measurement_needs(request.session.items), index, workers)
    yield session
    session.progress.done()
    from ..methods import replicate_store

    replicate_store.install(None)  # the next audit in this process (a test of the harness) installs its own


def _run_jobs_on_ray(session, pytestconfig: pytest.Config, needs: dict[str, set[str]]) -> None:
    """The selected checks' jobs, run on Ray before any check; what ran is kept in the report's plan."""
    import dataclasses
    import sys

    from ..jobs.audit_jobs import audit_graph
    from ..jobs.executors import run_on_ray

    collector = pytestconfig.stash.get(COLLECTOR_KEY, None)
    plan = collector.plan if collector is not None else None
    stream = sys.__stderr__ or sys.stderr

    def say(line: str) -> None:
        if pytestconfig.get_verbosity() >= 0:
            stream.write(line + "\n")

    # the workers train on the device this audit resolved, under the keys it reads, and stack as
    # the plan chose (its probe's timing): the graph that runs is the graph the plan priced
    for model in (plan or {}).get("models", []):
        if not model.get("probe_error") and "stacks" in model:
            session.zoo.follow_choice(model["name"], bool(model["stacks"]))
    resolved = dataclasses.replace(session.config, device=session.device.type)
    results = run_on_ray(resolved, audit_graph(session, plan, needs), say)
    if plan is not None:
        plan["executor_results"] = {"jobs_run": len(results), "models_trained": sum(r["trained"] for r in results),
                                    "retried": sorted(r["id"] for r in results if (r["attempts"] or 0) > 1),
                                    "failed": {r["id"]: r["error"] for r in results if r["error"]},
                                    "job_seconds": round(sum(r["seconds"] for r in results), 1)}


def measurement_needs(items) -> dict[str, set[str]]:
    """model name -> the suites whose selected tests name it (what the prefetch computes)."""
    from .relay import CHECK_MARKER, item_models

    needs: dict[str, set[str]] = {}
    for item in items:
        marker = item.get_closest_marker(CHECK_MARKER)
        if marker is None:
            continue
        for model in item_models(item):
            needs.setdefault(model, set()).add(marker.args[0].suite)
    return needs


@pytest.fixture
def record_finding(request: pytest.FixtureRequest):
    """Record a Finding for this test; the test fails when the finding breaches the policy."""
    config = request.config.stash[CONFIG_KEY]
    fail_on_warn = config.policy["fail_on_warn"]

    def record(finding: Finding) -> None:
        finding = capped_for_one_seed(finding, trained_at_one_seed(config, finding.models))
        request.node.stash.setdefault(ITEM_FINDINGS_KEY, []).append(finding.to_dict())
        if breaches_policy(finding.status, fail_on_warn, bool(finding.details.get("indicative"))):
            request.node.stash[ITEM_POLICY_FAILURE_KEY] = True
            pytest.fail(f"{finding.status}: {finding.reason}", pytrace=False)

    return record


def trained_at_one_seed(config, models: list[str]) -> list[str]:
    """Those of `models` the audit trains, where it trains them at one seed only (a model with
    `weights` is loaded, not trained)."""
    if len(config.seeds) > 1:
        return []
    from ..training.specs import model_specs

    loaded = {spec.name for spec in model_specs(config) if spec.weights}
    return [m for m in models if m not in loaded]


def skip_unless_poisoned(audit, *names: str) -> None:
    """Skip the test when one of the models is outside the poisoning suite's scope, with the reason."""
    from ..measure.poisoning import out_of_scope  # torch-side; the plugin imports this module at start-up

    for name in names:
        reason = out_of_scope(audit, name)
        if reason:
            pytest.skip(f"not poisoned in this audit: {reason}")
