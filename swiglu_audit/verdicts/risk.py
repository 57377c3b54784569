"""Findings, severities, and the RMF lookup; the judge that turns a measurement into a finding.

Checks compute; conditions judge. A suite measures and calls one of the builders here
(`judged_finding` for a Floor or Ceiling, `comparison_finding` for two arms, `decided_finding`
for a decision table); the check's declared condition (`conditions.py`) sets the status and its
modifiers may move it. No suite sets a status itself. Torch-free (the plugin's reporting side
imports it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from .conditions import (
    STATUS_ORDER,
    Ceiling,
    Condition,
    DecisionTable,
    Facts,
    Floor,
    Modifier,
    NoWorseThanBaseline,
    Status,
    judge_interval,
    judge_non_inferiority,
    level_words,
)

__all__ = ["STATUS_ORDER", "Status", "judge_interval", "level_words", "Floor", "Ceiling", "NoWorseThanBaseline"]


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


@dataclass(frozen=True, kw_only=True)
class CheckInfo:
    """What a check is, declared once next to its code: its tags, its words for the report, and
    the condition that judges its measurement and the modifiers that may move that verdict
    (`conditions.py`). Every check has a condition: no suite sets a status itself."""

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
    condition: Condition
    modifiers: tuple[Modifier, ...] = ()

    def validate(self) -> None:
        data = rmf_data()
        unknown = [i for i in self.rmf if i not in data["subcategories"]]
        if unknown:
            raise ValueError(f"check {self.check}: RMF IDs {unknown} are not in rmf.toml")
        if self.characteristic not in data["characteristics"]:
            raise ValueError(f"check {self.check}: unknown characteristic {self.characteristic!r}")
        if self.attack_class is not None and self.attack_class not in data["attack_classes"]:
            raise ValueError(f"check {self.check}: unknown attack class {self.attack_class!r}")
        if self.condition is None:
            raise ValueError(f"check {self.check}: no condition; every check declares how it is judged")
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
        # json_safe builds new containers itself: asdict's deep copy of the details first was a
        # third of a warm audit's cost of recording its findings
        return json_safe({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})



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
    severity re-derived. Only the judge calls it (`apply_modifiers`)."""
    likelihood = _LIKELIHOOD_BY_STATUS[status]
    return dataclasses.replace(finding, status=status.value, reason=f"{finding.reason}; {why}",
                               likelihood=likelihood, severity=severity(likelihood, finding.impact))


def error_finding(info: CheckInfo, models: list[str], exc: BaseException, subject: str | None = None) -> Finding:
    """A check that raised becomes an ERROR finding: the audit could not measure this risk."""
    return make_finding(info, models, Status.ERROR,
                        f"the check could not run: {type(exc).__name__}: {exc}",
                        threshold="the check must complete", subject=subject)


def apply_modifiers(info: CheckInfo, finding: Finding, facts: Facts | None, policy: dict) -> Finding:
    """The check's modifiers, in their declared order, on a judged finding. A modifier whose facts
    the suite did not measure is an error: a silent skip would let a masked model PASS."""
    facts = facts or {}
    for modifier in info.modifiers:
        missing = [name for name in modifier.needs if name not in facts]
        if missing:
            raise KeyError(f"check {info.check}: modifier {modifier.name!r} needs the facts {missing}; "
                           "the suite must measure them")
        ci = (finding.ci_low, finding.ci_high) if finding.ci_low is not None and finding.ci_high is not None else None
        moved = modifier.effect(Status(finding.status), finding.value, ci, facts, policy)
        if moved is not None:
            finding = with_status(finding, *moved)
            judged = finding.details.setdefault("judged", {})
            judged.setdefault("modified_by", []).append(modifier.name)
    return finding


def judged_finding(info: CheckInfo, models: list[str], value: float, policy: dict, what: str,
                   ci: tuple[float, float] | None = None, ci_level: float | None = None,
                   details: dict | None = None, aspect: str | None = None,
                   subject: str | None = None, facts: Facts | None = None, df: float | None = None,
                   se: float | None = None) -> Finding:
    """A finding judged by its check's declared Floor or Ceiling condition on the value and its
    interval (the value shown is the value judged), then by the check's modifiers on `facts`.
    `df`: the interval's degrees of freedom, kept so that a later run's two-run test reads the
    interval back as the standard error it came from (scheduled/regressions.py); `se`, where the
    interval is wider than its t-interval (`stats.Estimate.se`), the standard error to read instead."""
    condition = info.condition
    if not isinstance(condition, (Floor, Ceiling)):
        raise TypeError(f"check {info.check} declares no Floor or Ceiling condition")
    status, reason, threshold = condition.judge(value, policy, what, aspect, ci, ci_level)
    key = condition.policy_key(aspect)
    better = "higher" if condition.higher_is_better else "lower"
    # `judged` lets a reader (bench/verdict_audit.py) check the rule without parsing words
    judged = {"rule": "floor" if condition.higher_is_better else "ceiling", "key": key, "limit": policy[key],
              "on": "interval" if ci is not None else "value"}
    if ci is not None and df is not None:
        judged["df"] = df
    if ci is not None and se is not None:
        judged["se"] = se
    finding = make_finding(info, models, status, reason, threshold, value=value, ci=ci, ci_level=ci_level,
                           details={"better": better, "judged": judged, **(details or {})},
                           aspect=aspect, subject=subject)
    return apply_modifiers(info, finding, facts, policy)


ONE_SEED = "one training seed"


def capped_for_one_seed(finding: Finding, trained_once: list[str]) -> Finding:
    """A Floor or Ceiling PASS judged on the interval of models the audit trained at one seed
    only is at best WARN: that interval covers the test examples, not the training's randomness,
    so it claims the recipe is safe from one draw of it (comparisons refuse one seed already,
    `judge_non_inferiority`). A model loaded from its weights is one model, judged as it is, so
    `trained_once` names only the models the audit trained."""
    judged = finding.details.get("judged") or {}
    if (finding.status != Status.PASS.value or not trained_once or judged.get("rule") not in ("floor", "ceiling")
            or judged.get("on") != "interval"):
        return finding
    capped = with_status(finding, Status.WARN, f"inconclusive: {', '.join(trained_once)} trained at one seed only, so "
                                               "the interval covers the test examples, not the training's "
                                               "randomness; audit with 2 or more seeds")
    capped.details.setdefault("judged", {}).setdefault("modified_by", []).append(ONE_SEED)
    return capped


def decided_finding(info: CheckInfo, models: list[str], facts: Facts, policy: dict,
                    value: float | None = None, ci: tuple[float, float] | None = None,
                    ci_level: float | None = None, details: dict | None = None,
                    aspect: str | None = None, subject: str | None = None, df: float | None = None,
                    se: float | None = None) -> Finding:
    """A finding judged by its check's DecisionTable on the measured `facts` (the first rule
    that holds decides), then by the check's modifiers. `df`, `se`: as `judged_finding`'s."""
    condition = info.condition
    if not isinstance(condition, DecisionTable):
        raise TypeError(f"check {info.check} declares no DecisionTable condition")
    status, reason, threshold, row = condition.judge(facts, policy)
    details = details or {}
    # a table that reads a limit on an interval says so (`details.judged`), for bench/verdict_audit.py
    judged = {"rule": "decision_table", **details.get("judged", {}), "row": row}
    if ci is not None and df is not None:
        judged["df"] = df
    if ci is not None and se is not None:
        judged["se"] = se
    finding = make_finding(info, models, status, reason, threshold, value=value, ci=ci, ci_level=ci_level,
                           details={**details, "judged": judged}, aspect=aspect, subject=subject)
    return apply_modifiers(info, finding, facts, policy)


def comparison_verdict(info: CheckInfo, models, comparison, policy: dict, what: str,
                       details: dict | None = None, aspect: str | None = None,
                       sides: tuple[str, str] = ("candidate", "baseline")) -> Finding:
    """A two-arm finding (the candidate against a baseline, by default), judged by the check's
    NoWorseThanBaseline condition alone: one look of a sequential comparison. Modifiers come after
    the last look (`comparison_finding`, `sequential.judged_comparison`)."""
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


def comparison_finding(info: CheckInfo, models, comparison, policy: dict, what: str,
                       details: dict | None = None, aspect: str | None = None,
                       sides: tuple[str, str] = ("candidate", "baseline"), facts: Facts | None = None) -> Finding:
    """`comparison_verdict`, then the check's modifiers on `facts`."""
    return apply_modifiers(info, comparison_verdict(info, models, comparison, policy, what, details, aspect, sides),
                           facts, policy)


def json_safe(obj):
    """`obj` as every report format can hold it: a non-finite number becomes None (report.json's
    missing value); a numpy or torch scalar its Python value; a string holding a lone surrogate
    (text Python decoded from a non-UTF-8 file name, in an exception a user's code raised) keeps
    that character escaped, since UTF-8 cannot encode it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(obj, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # as asdict would, without its deep copy
        return json_safe({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return json_safe(obj.item())
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
