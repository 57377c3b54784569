"""One exception root for the harness, and the warning class.

`ConfigError` is also a `pytest.UsageError`, so a misconfiguration stops a pytest session with
pytest's own "usage error" message while notebook users can still catch `SwigluAuditError`.
"""

import pytest


class SwigluAuditError(Exception):
    """Root of every error the harness raises on purpose."""


class ConfigError(SwigluAuditError, pytest.UsageError):  # type: ignore[misc]  # final only in stubs
    """A setting in [tool.swiglu_audit] or on the command line is wrong; the message names it."""


class ContractError(SwigluAuditError):
    """A user's model or data breaks the contract of the README. It may carry several problems,
    one message each (`problems`), so that they can all be fixed in one round."""

    @property
    def problems(self) -> list[str]:
        return [str(a) for a in self.args]

    def __str__(self) -> str:
        return "; ".join(self.problems)


class ModelContractError(ContractError):
    """A user's model factory, weights or outputs break the model contract (see README)."""


class TrainingDivergedError(ModelContractError):
    """A model's training loss became NaN or infinite: the model (or its recipe) cannot be
    trained as configured. A model error like any other, so that the checks of other models that
    only compare with it report the comparison as lost, not their own finding."""


class TrainingFailedError(ModelContractError):
    """A model's training (or the reading of its checkpoint) raised: it cannot be trained as
    configured. Kept like a contract error, so that every check that needs the model reports it
    without training it again, and the checks of other models go on."""


class DataContractError(ContractError):
    """A user's dataset factory returned data that breaks the dataset contract (see README)."""


class CacheError(SwigluAuditError):
    """The checkpoint cache cannot be used (for example its folder is not writable)."""


class SwigluAuditWarning(pytest.PytestWarning):
    """Something the user should know about that does not stop the audit (a healed cache entry)."""
