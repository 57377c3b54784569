"""Fixtures the suites use. Registered by the plugin only when --swiglu-audit is on."""

from __future__ import annotations

import os

import pytest

from .collect import CONFIG_KEY, ITEM_FINDINGS_KEY, ITEM_POLICY_FAILURE_KEY, SESSION_KEY
from .risk import Finding, breaches_policy


@pytest.fixture(scope="session")
def audit(request: pytest.FixtureRequest, pytestconfig: pytest.Config):
    """This process's AuditSession: config, data, device, cache and the lazily trained zoo."""
    from .session import AuditSession

    session = AuditSession(pytestconfig.stash[CONFIG_KEY])
    pytestconfig.stash[SESSION_KEY] = session
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
        session.prefetch(measurement_needs(request.session.items), index, workers)
    yield session
    session.progress.done()


# Which expensive measurement each suite needs for the models its tests name.
_SUITE_NEEDS = {"adversarial": {"train", "adversarial"}, "poisoning": {"train", "poisoning"},
               "ood": {"train", "ood"}}


def measurement_needs(items) -> dict[str, set[str]]:
    """model name -> the expensive measurements the selected tests will ask for."""
    from .collect import CHECK_MARKER, item_models

    needs: dict[str, set[str]] = {}
    for item in items:
        marker = item.get_closest_marker(CHECK_MARKER)
        if marker is None:
            continue
        for model in item_models(item):
            needs.setdefault(model, set()).update(_SUITE_NEEDS.get(marker.args[0].suite, {"train"}))
    return needs


@pytest.fixture
def record_finding(request: pytest.FixtureRequest):
    """Record a Finding for this test; the test fails when the finding breaches the policy."""
    fail_on_warn = request.config.stash[CONFIG_KEY].policy["fail_on_warn"]

    def record(finding: Finding) -> None:
        request.node.stash.setdefault(ITEM_FINDINGS_KEY, []).append(finding.to_dict())
        if breaches_policy(finding.status, fail_on_warn):
            request.node.stash[ITEM_POLICY_FAILURE_KEY] = True
            pytest.fail(f"{finding.status}: {finding.reason}", pytrace=False)

    return record
