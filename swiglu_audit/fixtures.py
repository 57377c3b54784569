"""Fixtures the suites use. Registered by the plugin only when --swiglu-audit is on."""

from __future__ import annotations

import pytest

from .collect import CONFIG_KEY, ITEM_FINDINGS_KEY, ITEM_POLICY_FAILURE_KEY, SESSION_KEY
from .risk import Finding, breaches_policy


@pytest.fixture(scope="session")
def audit(pytestconfig: pytest.Config):
    """This process's AuditSession: config, data, device, cache and the lazily trained zoo."""
    from .session import AuditSession

    session = AuditSession(pytestconfig.stash[CONFIG_KEY])
    pytestconfig.stash[SESSION_KEY] = session
    yield session
    session.progress.done()


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
