"""One exception root for the harness, and the warning class.

`ConfigError` is also a `pytest.UsageError`, so a misconfiguration stops a pytest session with
pytest's own "usage error" message while notebook users can still catch `SwigluAuditError`.
"""

import pytest


class SwigluAuditError(Exception):
    """Root of every error the harness raises on purpose."""


class ConfigError(SwigluAuditError, pytest.UsageError):
    """A setting in [tool.swiglu_audit] or on the command line is wrong; the message names it."""


class ModelContractError(SwigluAuditError):
    """A user's model factory, weights or outputs break the model contract (see README)."""


class DataContractError(SwigluAuditError):
    """A user's dataset factory returned data that breaks the dataset contract (see README)."""


class CacheError(SwigluAuditError):
    """The checkpoint cache cannot be used (for example its folder is not writable)."""


class ReportWriteError(SwigluAuditError):
    """A report could not be written where it was asked to go."""


class SwigluAuditWarning(pytest.PytestWarning):
    """Something the user should know about that does not stop the audit (a healed cache entry)."""
