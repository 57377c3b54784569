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


def judge_interval(value: float, ci: tuple[float, float] | None, limit: float, higher_is_better: bool,
                   breached: Status) -> Status:
    """The audit's one verdict rule (DESIGN.md section 8): PASS only when the whole interval lies
    on the acceptable side of the limit; `breached` only when the whole interval lies beyond it;
    otherwise WARN, inconclusive. A point estimate never decides. A value without an interval is
    an exact count or measurement (a parameter count, a flip share over all examples) and is
    judged as it is."""
    low, high = ci if ci is not None else (value, value)
    if not higher_is_better:  # mirror, so that "acceptable" is always "at or above the limit"
        low, high, limit = -high, -low, -limit
    if low >= limit:
        return Status.PASS
    if high < limit:
        return breached
    return Status.WARN


def level_words(level: float) -> str:
    """A confidence level as a reader needs it: 95%, and 98.33% for a sequential look's level."""
    return f"{100 * level:.4g}%"


def _interval_words(ci: tuple[float, float] | None, level: float | None) -> str:
    if ci is None:
        return ""
    return f" ({level_words(level)} CI [{ci[0]:.4g}, {ci[1]:.4g}])" if level else f" (interval [{ci[0]:.4g}, {ci[1]:.4g}])"


@dataclass(frozen=True)
class _Limit:
    key: str  # the policy key holding the limit
    quantity: str  # what the threshold sentence calls the value ("robust accuracy", "AUROC")
    breached: Status = Status.WARN  # the status when the limit is crossed
    by_aspect: tuple[tuple[str, str], ...] = ()  # (aspect, key) pairs where an aspect has its own key

    def policy_key(self, aspect: str | None = None) -> str:
        return dict(self.by_aspect).get(aspect or "", self.key)

    def judge(self, value: float, policy: dict, what: str, aspect: str | None = None,
              ci: tuple[float, float] | None = None, level: float | None = None) -> tuple[Status, str, str]:
        """(status, the sentence naming the threshold, the threshold) for one value and its
        interval, by `judge_interval`."""
        key = self.policy_key(aspect)
        limit = policy[key]
        sign, side, beyond = (">=", "at or above", "below") if self.higher_is_better else ("<=", "at or below", "above")
        status = judge_interval(value, ci, limit, self.higher_is_better, self.breached)
        shown = f"{what} {value:.4g}{_interval_words(ci, level)}"
        whole = "the whole interval" if ci is not None else "it"
        if status is Status.PASS:
            reason = f"{shown}: {whole} is {side} the policy limit {key} = {limit}"
        elif status is self.breached and (ci is None or (ci[1] < limit if self.higher_is_better else ci[0] > limit)):
            reason = f"{shown}: {whole} is {beyond} the policy limit {key} = {limit}"
        else:
            reason = (f"{shown}: inconclusive, the interval reaches across the policy limit {key} = {limit}; "
                      "more seeds or test examples would narrow it")
        threshold = f"{self.quantity} {sign} {key} = {limit}"
        return status, reason, threshold + (" (the whole interval)" if ci is not None else "")

    higher_is_better = True


@dataclass(frozen=True)
class Floor(_Limit):
    """PASS when the whole interval is at or above its policy key; `breached` when the whole
    interval is below it; WARN (inconclusive) when it straddles the key."""

    higher_is_better = True


@dataclass(frozen=True)
class Ceiling(_Limit):
    """PASS when the whole interval is at or below its policy key; `breached` when the whole
    interval is above it; WARN (inconclusive) when it straddles the key."""

    higher_is_better = False


@dataclass(frozen=True)
class NoWorseThanBaseline:
    """Candidate vs baseline, a non-inferiority test (`judge_non_inferiority`): PASS when the
    whole interval of candidate - baseline shows the candidate worse by at most `policy[key]`, FAIL
    when the whole interval shows it worse by more, WARN (inconclusive) otherwise."""

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


# From the best verdict to the worst: the modifiers below move a finding along this order only.
_GOODNESS = (Status.PASS, Status.WARN, Status.FAIL, Status.ERROR)


def no_better_than(finding: Finding, cap: Status, why: str) -> Finding:
    """At best `cap`: the condition's modifier for evidence that voids a better verdict (a model
    whose gradient-masking checks fail never PASSes). Worse statuses stay as they are; `why` is
    added only where the status changes (a FAIL must not read "inconclusive")."""
    status = Status(finding.status)
    if _GOODNESS.index(status) >= _GOODNESS.index(cap):
        return finding
    return with_status(finding, cap, why)


def no_worse_than(finding: Finding, floor: Status, why: str) -> Finding:
    """At worst `floor` (never ERROR here): for findings that inform but cannot breach the policy
    (a wall-clock timing on a shared machine, an inherent weakness rather than a regression).
    Only a status worse than `floor` changes, and only then is `why` added."""
    status = Status(finding.status)
    if status is Status.ERROR or _GOODNESS.index(status) <= _GOODNESS.index(floor):
        return finding
    return with_status(finding, floor, why)


def error_finding(info: CheckInfo, models: list[str], exc: BaseException, subject: str | None = None) -> Finding:
    """A check that raised becomes an ERROR finding: the audit could not measure this risk."""
    return make_finding(info, models, Status.ERROR,
                        f"the check could not run: {type(exc).__name__}: {exc}",
                        threshold="the check must complete", subject=subject)


def judge_non_inferiority(comparison, tolerance: float, what: str, key: str, higher_is_better: bool = True,
                          sides: tuple[str, str] = ("candidate", "baseline")) -> tuple[Status, str]:
    """Candidate vs baseline by `judge_interval` on candidate - baseline with the limit at minus
    the tolerance (or plus it, where lower is better): PASS shows non-inferiority (a one-sided test
    at (1 - level) / 2, the interval's end), FAIL shows the candidate worse by more than the
    tolerance, WARN is inconclusive and names what would decide it. `sides` names the two arms
    (a poisoned model against its clean self, say)."""
    c = comparison
    new, old = sides
    limit = -tolerance if higher_is_better else tolerance
    ci = f"{level_words(c.level)} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    design = ("interval over seeds and examples" if c.df is None else
              f"t-interval over {c.n_seeds} seed(s) per architecture, one value per seed" if c.n_examples == 1 else
              f"t-interval over {c.n_seeds} seed(s) per architecture and {c.n_examples} examples")
    text = f"{what}: {new} - {old} = {c.difference:+.3f}, {ci} ({design})"
    worse = "lower" if higher_is_better else "higher"
    if c.n_seeds < 2:
        return Status.WARN, (f"{text}; inconclusive: with one seed per architecture the interval covers the "
                             "test examples only, not training randomness, so it cannot show non-inferiority "
                             "of the architecture; use 3 or more seeds")
    status = judge_interval(c.difference, (c.ci_low, c.ci_high), limit, higher_is_better, Status.FAIL)
    if status is Status.PASS:
        return status, (f"{text}; non-inferior: the whole interval lies within {key} = {tolerance} of the "
                        f"{old} (the {new} is at most {tolerance} {worse})")
    if status is Status.FAIL:
        return status, (f"{text}; the whole interval lies beyond {key} = {tolerance}: the {new} is "
                        f"{worse} than the {old} by more than the tolerance")
    return status, (f"{text}; inconclusive: the interval reaches across the tolerance {key} = {tolerance} "
                    f"({limit:+g}); {_to_decide(c, tolerance, higher_is_better)}")


def _to_decide(comparison, tolerance: float, higher_is_better: bool) -> str:
    """What would settle an inconclusive comparison: the seed count, or why no seed count does."""
    needed, note = comparison.seeds_to_decide(tolerance, higher_is_better)
    if needed is not None:
        return (f"about {needed} seeds per architecture would decide it (power 0.8 if the true difference "
                f"is the observed one; this audit has {comparison.n_seeds})")
    return note


def judged_finding(info: CheckInfo, models: list[str], value: float, policy: dict, what: str,
                   ci: tuple[float, float] | None = None, ci_level: float | None = None,
                   details: dict | None = None, aspect: str | None = None,
                   subject: str | None = None) -> Finding:
    """A per-model finding judged by its check's declared Floor or Ceiling condition on the value
    and its interval (the value shown is the value judged)."""
    condition = info.condition
    if not isinstance(condition, (Floor, Ceiling)):
        raise TypeError(f"check {info.check} declares no Floor or Ceiling condition")
    status, reason, threshold = condition.judge(value, policy, what, aspect, ci, ci_level)
    key = condition.policy_key(aspect)
    better = "higher" if condition.higher_is_better else "lower"
    # `judged` lets a reader (bench/verdict_audit.py) check the rule without parsing words
    judged = {"rule": "floor" if condition.higher_is_better else "ceiling", "key": key, "limit": policy[key],
              "on": "interval" if ci is not None else "value"}
    return make_finding(info, models, status, reason, threshold, value=value, ci=ci, ci_level=ci_level,
                        details={"better": better, "judged": judged, **(details or {})},
                        aspect=aspect, subject=subject)


def comparison_finding(info: CheckInfo, models, comparison, policy: dict, what: str,
                       details: dict | None = None, aspect: str | None = None,
                       sides: tuple[str, str] = ("candidate", "baseline")) -> Finding:
    """A two-arm finding (the candidate against a baseline, by default), judged by the check's
    NoWorseThanBaseline condition."""
    condition = info.condition
    if not isinstance(condition, NoWorseThanBaseline):
        raise TypeError(f"check {info.check} declares no NoWorseThanBaseline condition")
    key, higher_is_better = condition.key, condition.higher_is_better
    tolerance = policy[key]
    status, reason = judge_non_inferiority(comparison, tolerance, what, key, higher_is_better, sides)
    needed, note = (comparison.seeds_to_decide(tolerance, higher_is_better) if status is Status.WARN
                    else (None, "decided"))
    limit = -tolerance if higher_is_better else tolerance
    return make_finding(
        info, list(models), status, reason,
        threshold=f"non-inferiority: the whole {level_words(comparison.level)} interval of {sides[0]} - {sides[1]} "
                  f"{'>=' if higher_is_better else '<='} {limit:+g} ({key} = {tolerance}); FAIL when the whole "
                  "interval lies beyond it",
        value=comparison.difference, ci=(comparison.ci_low, comparison.ci_high),
        ci_level=comparison.level,
        details={"better": "higher" if higher_is_better else "lower",
                 "judged": {"rule": "non_inferiority", "key": key, "limit": limit, "on": "interval"},
                 "comparison": {**comparison.to_dict(),
                                "method": "Welch-Satterthwaite t-interval over seeds and examples",
                                "seeds_to_decide": needed, "seeds_to_decide_note": note},
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


def is_indicative(finding: dict | str) -> bool:
    """A wall-clock finding (`details.indicative`): it informs, and never breaches the policy."""
    return not isinstance(finding, str) and bool((finding.get("details") or {}).get("indicative"))


def _status(finding: dict | str) -> str:
    return finding if isinstance(finding, str) else finding["status"]


def verdict(findings, fail_on_warn: bool = False) -> str:
    """The audit's overall status from its findings (dicts, or bare statuses): the worst of them.
    Under fail_on_warn a WARN counts as a FAIL, except an indicative (wall-clock) one."""
    findings = list(findings)
    statuses = {_status(f) for f in findings}
    if Status.ERROR.value in statuses:
        return Status.ERROR.value
    if Status.FAIL.value in statuses:
        return Status.FAIL.value
    if Status.WARN.value in statuses:
        gating = any(_status(f) == Status.WARN.value and not is_indicative(f) for f in findings)
        return Status.FAIL.value if fail_on_warn and gating else Status.WARN.value
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


def breaches_policy(status: str, fail_on_warn: bool = False, indicative: bool = False) -> bool:
    """FAIL and ERROR breach the policy; WARN too under fail_on_warn, unless the finding is
    indicative (a wall-clock timing on a shared machine never fails a run)."""
    return status in (Status.FAIL.value, Status.ERROR.value) or (
        fail_on_warn and status == Status.WARN.value and not indicative)
