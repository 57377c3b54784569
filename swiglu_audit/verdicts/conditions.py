"""Conditions: how a check's measurement becomes a status (DESIGN.md section 3, "one way to judge").

Every `CheckInfo` declares one condition and any number of modifiers. Suites measure and hand the
measurement to the judge (`risk.judged_finding`, `risk.comparison_finding`, `risk.decided_finding`);
the condition alone sets the status, and the modifiers alone may move it afterwards:

- `Floor` / `Ceiling`: a value and its interval against a policy key (`judge_interval`);
- `NoWorseThanBaseline`: a non-inferiority comparison of two arms (`judge_non_inferiority`);
- `DecisionTable`: ordered rules over the measurement's facts, the first that holds decides (the
  training-set scan, the numerical parity checks, the sanity checks);
- `Modifier`: evidence beyond the value that caps or sets the verdict (a masked model is WARN at
  best, a wall-clock timing WARN at worst, a required gain judged again).

Torch-free.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"


# What needs attention first: reports and the terminal list findings in this order.
STATUS_ORDER = {Status.ERROR.value: 0, Status.FAIL.value: 1, Status.WARN.value: 2, Status.PASS.value: 3}



# From the best verdict to the worst: the modifiers below move a finding along this order only.
GOODNESS = (Status.PASS, Status.WARN, Status.FAIL, Status.ERROR)




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


Facts = dict[str, Any]  # what a suite measured, by name: the rules and modifiers read it
Words = Callable[[Facts, dict], str]  # (facts, policy) -> a sentence


@dataclass(frozen=True)
class Rule:
    """One row of a decision table: `status` with the sentence `words` when `when` holds."""

    status: Status
    when: Callable[[Facts, dict], bool]
    words: Words


def always(facts: Facts, policy: dict) -> bool:
    """The last row of every decision table."""
    return True


@dataclass(frozen=True)
class DecisionTable:
    """Ordered rules over the facts a suite measured: the first rule that holds decides the status
    and its sentence. The last rule must hold always (`always`), so every measurement gets a
    verdict. `threshold` states the whole rule for the report in one sentence."""

    threshold: Words
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not self.rules or self.rules[-1].when is not always:
            raise ValueError("a decision table's last rule must be `always`, so that every measurement is judged")

    def judge(self, facts: Facts, policy: dict) -> tuple[Status, str, str, int]:
        """(status, sentence, threshold, the index of the rule that decided)."""
        for index, rule in enumerate(self.rules):
            if rule.when(facts, policy):
                return rule.status, rule.words(facts, policy), self.threshold(facts, policy), index
        raise AssertionError("unreachable: the last rule always holds")


Condition = Floor | Ceiling | NoWorseThanBaseline | DecisionTable


# A modifier's effect: given the status so far, the finding's value and interval, the facts and
# the policy, a new (status, the sentence added to the reason) or None where it does not apply.
Effect = Callable[[Status, float | None, tuple[float, float] | None, Facts, dict], tuple[Status, str] | None]


@dataclass(frozen=True)
class Modifier:
    """Evidence beyond the value, applied after the condition (and after every sequential look):
    it may cap the verdict (`capped`), floor it (`floored`) or judge it again (`rejudged`). Its
    name is listed in the finding's `details.judged.modified_by` when it changed anything."""

    name: str
    needs: tuple[str, ...]  # the facts it reads: a suite that does not measure them is an error, not a silent skip
    effect: Effect


def capped(name: str, needs: tuple[str, ...], cap: Status, why: Callable[[Facts, dict], str | None],
           note: Callable[[Facts, dict], str | None] | None = None) -> Modifier:
    """At best `cap` when `why` returns a sentence (a model whose gradient-masking checks fail never
    PASSes). A status already at `cap` or worse stands, with `note`'s sentence added if given."""
    def effect(status, value, ci, facts, policy):
        words = why(facts, policy)
        if words is None or status is Status.ERROR:
            return None
        if GOODNESS.index(status) < GOODNESS.index(cap):
            return cap, words
        said = note(facts, policy) if note is not None else None
        return (status, said) if said else None
    return Modifier(name, needs, effect)


def inconclusive_when(name: str, needs: tuple[str, ...], gap: Callable[[Facts, dict], str | None]) -> Modifier:
    """At best an inconclusive WARN when `gap` names evidence the finding lacks (a search over its
    budget, a scheme that changed nothing); a WARN or worse carries the same sentence."""
    return capped(name, needs, Status.WARN,
                  lambda facts, policy: None if (words := gap(facts, policy)) is None else f"inconclusive: {words}",
                  note=gap)


def scope_of_a_pass(name: str, needs: tuple[str, ...], words: Callable[[Facts, dict], str | None]) -> Modifier:
    """A PASS that found nothing says what it looked for and what it did not (DESIGN section 8: a
    "nothing found" PASS states what it covers); a WARN or FAIL lists what it found instead."""
    def effect(status, value, ci, facts, policy):
        said = words(facts, policy) if status is Status.PASS else None
        return (status, said) if said else None
    return Modifier(name, needs, effect)


def floored(name: str, needs: tuple[str, ...], floor: Status, why: Callable[[Facts, dict], str | None]) -> Modifier:
    """At worst `floor` when `why` returns a sentence (never ERROR): for findings that inform but
    cannot breach the policy (a wall-clock timing, an inherent weakness rather than a regression)."""
    def effect(status, value, ci, facts, policy):
        words = why(facts, policy)
        if words is None or status is Status.ERROR or GOODNESS.index(status) <= GOODNESS.index(floor):
            return None
        return floor, words
    return Modifier(name, needs, effect)


def rejudged(name: str, needs: tuple[str, ...], rule: Effect) -> Modifier:
    """A second rule on the same value that sets the status itself (a required gain beyond
    non-inferiority): `rule` returns (status, sentence) or None where it does not apply."""
    return Modifier(name, needs, rule)
