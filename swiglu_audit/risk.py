"""Findings, statuses, severities, and the RMF lookup.

Checks compute; conditions judge. A check returns measurements; the condition helpers here turn a
measurement and a policy threshold into a Status with a sentence that names the threshold. Torch-free
(the plugin's reporting side imports it).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"


# What needs attention first: reports and the terminal list findings in this order.
STATUS_ORDER = {Status.ERROR.value: 0, Status.FAIL.value: 1, Status.WARN.value: 2, Status.PASS.value: 3}

LEVELS = ("very low", "low", "moderate", "high", "very high")

# NIST SP 800-30 Rev. 1, Table I-2: level of risk from likelihood (rows) and impact (columns),
# both on the five-level scale above, indexed 0 (very low) to 4 (very high).
_RISK_MATRIX = (
    (0, 0, 0, 1, 1),
    (0, 1, 1, 1, 2),
    (0, 1, 2, 2, 3),
    (0, 1, 2, 3, 4),
    (0, 1, 2, 3, 4),
)

# How likely the risk is to be real, given what the audit saw.
_LIKELIHOOD_BY_STATUS = {Status.PASS: "very low", Status.WARN: "moderate", Status.FAIL: "high",
                         Status.ERROR: "moderate"}


def severity(likelihood: str, impact: str) -> str:
    return LEVELS[_RISK_MATRIX[LEVELS.index(likelihood)][LEVELS.index(impact)]]


@functools.cache
def rmf_data() -> dict:
    return tomllib.loads(resources.files("swiglu_audit").joinpath("rmf.toml").read_text())


@dataclass(frozen=True)
class _Limit:
    key: str  # the policy key holding the limit
    quantity: str  # what the threshold sentence calls the value ("robust accuracy", "AUROC")
    breached: Status = Status.WARN  # the status when the limit is crossed
    by_aspect: tuple[tuple[str, str], ...] = ()  # (aspect, key) pairs where an aspect has its own key

    def policy_key(self, aspect: str | None = None) -> str:
        return dict(self.by_aspect).get(aspect or "", self.key)

    def judge(self, value: float, policy: dict, what: str, aspect: str | None = None) -> tuple[Status, str, str]:
        """(status, the sentence naming the threshold, the threshold) for one value."""
        key = self.policy_key(aspect)
        rule, sign = (judge_floor, ">=") if self.higher_is_better else (judge_ceiling, "<=")
        status, reason = rule(value, policy[key], self.breached, what, key)
        return status, reason, f"{self.quantity} {sign} {key} = {policy[key]}"

    higher_is_better = True


@dataclass(frozen=True)
class Floor(_Limit):
    """PASS when the value is at or above its policy key, else `breached`."""

    higher_is_better = True


@dataclass(frozen=True)
class Ceiling(_Limit):
    """PASS when the value is at or below its policy key, else `breached`."""

    higher_is_better = False


@dataclass(frozen=True)
class NoWorseThanBaseline:
    """Candidate vs baseline (`judge_drop`): FAIL only when worse by more than `policy[key]` and
    significant; WARN when worse by more than that but not significant."""

    key: str
    higher_is_better: bool = True


Condition = Floor | Ceiling | NoWorseThanBaseline


@dataclass(frozen=True)
class CheckInfo:
    """What a check is, declared once next to its code: its tags, its words for the report, and
    the condition that judges its value against the policy (None for checks judged their own way,
    such as the sanity checks and golden files)."""

    suite: str
    check: str
    title: str
    metric: str
    rmf: tuple[str, ...]
    characteristic: str  # key of [characteristics] in rmf.toml
    impact: str  # one of LEVELS: how bad it is if the risk this check looks for is real
    explanation: str
    mitigation: str
    attack_class: str | None = None  # key of [attack_classes], adversarial/poisoning checks only
    condition: Condition | None = None

    def validate(self) -> None:
        data = rmf_data()
        unknown = [i for i in self.rmf if i not in data["subcategories"]]
        if unknown:
            raise ValueError(f"check {self.check}: RMF IDs {unknown} are not in rmf.toml")
        if self.characteristic not in data["characteristics"]:
            raise ValueError(f"check {self.check}: unknown characteristic {self.characteristic!r}")
        if self.attack_class is not None and self.attack_class not in data["attack_classes"]:
            raise ValueError(f"check {self.check}: unknown attack class {self.attack_class!r}")
        if self.impact not in LEVELS:
            raise ValueError(f"check {self.check}: impact must be one of {LEVELS}")


@dataclass
class Finding:
    id: str
    suite: str
    check: str
    title: str
    models: list[str]
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float | None
    threshold: str  # the rule the value was held to, in words
    status: str
    reason: str  # one sentence: why this status, naming the threshold
    severity: str
    likelihood: str
    impact: str
    rmf: list[str]
    characteristic: str
    attack_class: str | None
    explanation: str
    mitigation: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        return cls(**data)


def make_finding(info: CheckInfo, models: list[str], status: Status, reason: str, threshold: str,
                 value: float | None = None, ci: tuple[float, float] | None = None,
                 ci_level: float | None = None, details: dict | None = None,
                 subject: str | None = None, aspect: str | None = None) -> Finding:
    """`subject` names what was checked when it is not a model (an op implementation, say);
    `aspect` tells apart findings of one check on the same models (near or far OOD, say)."""
    likelihood = _LIKELIHOOD_BY_STATUS[status]
    return Finding(
        id=f"{info.suite}.{info.check}[{subject or '-vs-'.join(models)}]" + (f"[{aspect}]" if aspect else ""),
        suite=info.suite, check=info.check, title=info.title, models=list(models),
        metric=info.metric, value=value,
        ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, ci_level=ci_level,
        threshold=threshold, status=status.value, reason=reason,
        severity=severity(likelihood, info.impact), likelihood=likelihood, impact=info.impact,
        rmf=list(info.rmf), characteristic=info.characteristic, attack_class=info.attack_class,
        explanation=info.explanation, mitigation=info.mitigation, details=details or {},
    )


def with_status(finding: Finding, status: Status, why: str) -> Finding:
    """The same finding at another status, its sentence extended by `why` and its likelihood and
    severity re-derived: for evidence beyond the value (parameter counts that do not match, a
    masked gradient that voids a robustness number, a weakness that is inherent, not a regression)."""
    likelihood = _LIKELIHOOD_BY_STATUS[status]
    return dataclasses.replace(finding, status=status.value, reason=f"{finding.reason}; {why}",
                               likelihood=likelihood, severity=severity(likelihood, finding.impact))


def error_finding(info: CheckInfo, models: list[str], exc: BaseException, subject: str | None = None) -> Finding:
    """A check that raised becomes an ERROR finding: the audit could not measure this risk."""
    return make_finding(info, models, Status.ERROR,
                        f"the check could not run: {type(exc).__name__}: {exc}",
                        threshold="the check must complete", subject=subject)


def judge_floor(value: float, floor: float, status_below: Status, what: str, key: str) -> tuple[Status, str]:
    """PASS when value >= floor, else `status_below`; the sentence names the policy key."""
    if value >= floor:
        return Status.PASS, f"{what} {value:.3f} is at or above the policy floor {key} = {floor}"
    return status_below, f"{what} {value:.3f} is below the policy floor {key} = {floor}"


def judge_ceiling(value: float, ceiling: float, status_above: Status, what: str, key: str) -> tuple[Status, str]:
    if value <= ceiling:
        return Status.PASS, f"{what} {value:.4g} is within the policy limit {key} = {ceiling}"
    return status_above, f"{what} {value:.4g} exceeds the policy limit {key} = {ceiling}"


def judge_drop(comparison, max_drop: float, what: str, key: str, higher_is_better: bool = True
               ) -> tuple[Status, str]:
    """Candidate vs baseline. FAIL only when the candidate is worse by more than `max_drop` and the
    difference is statistically significant; WARN when it is worse by more than `max_drop` but the
    evidence is not significant (more seeds or examples would tell)."""
    drop = -comparison.difference if higher_is_better else comparison.difference
    ci = f"{comparison.level:.0%} CI [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}]"
    # p = 0: no bootstrap replicate fell on the other side of zero
    p = "p ~ 0, no bootstrap replicate crossed 0" if comparison.p_value == 0 else f"p = {comparison.p_value:.3g}"
    sig = (f"significant ({p} < alpha = {comparison.alpha})" if comparison.significant
           else f"not significant ({p}, alpha = {comparison.alpha})")
    text = (f"{what}: candidate - baseline = {comparison.difference:+.3f}, {ci}, {sig} (interval and p "
            "from one bootstrap over seeds and examples)")
    if drop <= max_drop:
        return Status.PASS, f"{text}; the candidate is not worse by more than {key} = {max_drop}"
    if comparison.significant:
        return Status.FAIL, f"{text}; the candidate is worse by more than {key} = {max_drop}"
    return Status.WARN, (f"{text}; the candidate looks worse by more than {key} = {max_drop}, "
                         f"but the evidence is not significant: {_more_evidence(comparison, max_drop)}")


def _more_evidence(comparison, tolerance: float) -> str:
    """What would settle an inconclusive comparison: the power estimate's seed count, or why none."""
    needed, note = (comparison.seeds_needed(tolerance) if hasattr(comparison, "seeds_needed")
                    else (None, "add seeds or examples"))
    if needed is not None:
        return (f"about {needed} seeds per architecture would detect a difference of {tolerance} "
                f"(power 0.8; this audit has {comparison.n_seeds})")
    return note or "add seeds or examples"


def judged_finding(info: CheckInfo, models: list[str], value: float, policy: dict, what: str,
                   ci: tuple[float, float] | None = None, ci_level: float | None = None,
                   details: dict | None = None, aspect: str | None = None,
                   judged: float | None = None, subject: str | None = None) -> Finding:
    """A per-model finding judged by its check's declared Floor or Ceiling condition: the
    condition gives the status, the sentence and the threshold; the test gives the value (and,
    with `judged`, a different quantity the condition holds to its limit, such as a drop)."""
    condition = info.condition
    if not isinstance(condition, (Floor, Ceiling)):
        raise TypeError(f"check {info.check} declares no Floor or Ceiling condition")
    status, reason, threshold = condition.judge(value if judged is None else judged, policy, what, aspect)
    # `better` tells a later comparison of two audits which way is a regression (history.py)
    better: str | None = "higher" if condition.higher_is_better else "lower"
    if judged is not None:
        better = None  # the value is not the judged quantity: its direction is not declared
    return make_finding(info, models, status, reason, threshold, value=value, ci=ci, ci_level=ci_level,
                        details={**({"better": better} if better else {}), **(details or {})},
                        aspect=aspect, subject=subject)


def comparison_finding(info: CheckInfo, models, comparison, policy: dict, what: str,
                       details: dict | None = None, aspect: str | None = None) -> Finding:
    """A candidate-vs-baseline finding, judged by the check's NoWorseThanBaseline condition."""
    condition = info.condition
    if not isinstance(condition, NoWorseThanBaseline):
        raise TypeError(f"check {info.check} declares no NoWorseThanBaseline condition")
    key, higher_is_better = condition.key, condition.higher_is_better
    status, reason = judge_drop(comparison, policy[key], what, key, higher_is_better)
    return make_finding(
        info, list(models), status, reason,
        threshold=f"candidate not worse ({'lower' if higher_is_better else 'higher'}) than the "
                  f"baseline by more than {key} = {policy[key]} "
                  f"(a FAIL needs significance at alpha = {policy['alpha']})",
        value=comparison.difference, ci=(comparison.ci_low, comparison.ci_high),
        ci_level=comparison.level,
        details={"better": "higher" if higher_is_better else "lower",
                 "comparison": {**comparison.to_dict(), "p_value_method": "two-level bootstrap (seeds and examples)",
                                "seeds_needed_for_tolerance": comparison.seeds_needed(policy[key])[0],
                                "seeds_needed_note": comparison.seeds_needed(policy[key])[1]},
                 **(details or {})},
        aspect=aspect)


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _json_safe(obj.item())
    return obj


def verdict(statuses, fail_on_warn: bool = False) -> str:
    """The audit's overall status from its findings' statuses: the worst of them."""
    statuses = set(statuses)
    if Status.ERROR.value in statuses:
        return Status.ERROR.value
    if Status.FAIL.value in statuses:
        return Status.FAIL.value
    if Status.WARN.value in statuses:
        return Status.FAIL.value if fail_on_warn else Status.WARN.value
    return Status.PASS.value if statuses else "NO FINDINGS"


def error_groups(findings: list[dict], min_size: int = 2) -> list[dict]:
    """ERROR findings that one cause explains, grouped: same reason, one model common to all.

    A model that cannot be built or diverges in training fails every check that names it (tens of
    them); a reviewer needs one line ("nan-model could not be evaluated: 35 checks, first error:
    ..."), not tens. Returns [{"model", "reason", "ids"}] for groups of at least `min_size`."""
    by_reason: dict[str, list[dict]] = {}
    for f in findings:
        if f["status"] == Status.ERROR.value:
            by_reason.setdefault(f["reason"], []).append(f)
    groups = []
    for reason, fs in by_reason.items():
        common = set(fs[0]["models"]).intersection(*(f["models"] for f in fs))
        if len(fs) >= min_size and common:
            # the model the reason names, else the common one (alphabetically, to be stable)
            model = next((m for m in sorted(common) if f"'{m}'" in reason), sorted(common)[0])
            groups.append({"model": model, "reason": reason, "ids": sorted(f["id"] for f in fs)})
    return sorted(groups, key=lambda g: g["model"])


def breaches_policy(status: str, fail_on_warn: bool = False) -> bool:
    return status in (Status.FAIL.value, Status.ERROR.value) or (fail_on_warn and status == Status.WARN.value)
