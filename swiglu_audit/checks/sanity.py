"""The gradient-masking and evaluation sanity checks (Carlini et al. 2019; Athalye et al. 2018):
a registry, one judge per check, each its own finding under `adversarial.SANITY`.

A judge reads the seed-stacked attack results of one model (`measure.adversarial.adversarial`)
and the policy, and returns a `Verdict`: passed, the statistic, a sentence naming the tolerance,
and the interval that decided it (the finding's ci_low and ci_high). Accuracies are
means over seeds and examples. The gaps are judged on their intervals over the attacked examples
(`stats.fixed_models_difference`: the question is asked of the models audited, so their seeds are
not a draw to generalise over). A point estimate beyond the tolerance fails (a masking symptom,
as before); a PASS needs the whole interval within it. Between the two, or where the configured
attacks cannot answer the question, passed is None: a WARN that says why, never a PASS that the
evidence does not carry. Only a failure marks the model masked.

Adding a check is one decorated function here and a test in tests/test_checks.py; the suite
parametrizes over the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..methods.attack_registry import black_box_attacks, white_box_attacks
from ..verdicts.stats import Estimate, fixed_models_difference, fixed_models_mean


class Verdict(NamedTuple):
    passed: bool | None  # None: inconclusive or not measured (WARN)
    statistic: float | None  # None: not measured
    sentence: str
    # the estimate the verdict was read from, for the finding's ci_low / ci_high; None where the
    # check is a fact of the models (finite gradients) rather than an estimate over inputs
    interval: Estimate | None = None


@dataclass(frozen=True)
class SanityCheck:
    question: str  # what it asks, in words
    tolerance_key: str | None  # the policy key of its tolerance
    judge: Callable[[dict, dict], Verdict]


SANITY_CHECKS: dict[str, SanityCheck] = {}


def _sanity_check(name: str, question: str, tolerance_key: str | None = None):
    def register(judge: Callable[[dict, dict], Verdict]) -> Callable[[dict, dict], Verdict]:
        SANITY_CHECKS[name] = SanityCheck(question, tolerance_key, judge)
        return judge
    return register


def _mean(m) -> float:
    return float(np.mean(m))


def _level(policy: dict) -> float:
    return policy.get("confidence_level", 0.95)


def _within(estimates: list[Estimate], limit: float) -> bool | None:
    """The verdict of gaps that may be at most `limit`: a point estimate beyond it fails, as it
    always did (a masking symptom flags the model whatever the interval); a PASS needs every
    gap's whole interval within it; between the two the check is inconclusive (None: WARN)."""
    if any(e.value > limit for e in estimates):
        return False
    return True if all(e.ci_high <= limit for e in estimates) else None


def _interval(e: Estimate) -> str:
    return f"{e.value:+.3f} ({e.level:.0%} CI [{e.ci_low:+.3f}, {e.ci_high:+.3f}])"


def _inconclusive(passed: bool | None, key: str, limit: float) -> str:
    return (f"; inconclusive: within {key} = {limit} as measured, but the interval reaches past it (more seeds "
            "or attacked examples would narrow it)") if passed is None else ""


def masking_failures(result: dict, policy: dict) -> list[str]:
    """The sanity checks a model fails: any one means its gradient-based numbers are untrustworthy.
    A check the configured attacks cannot answer (passed None) is not a failure: it is its own
    finding's WARN."""
    failed = lambda passed: passed is not None and not passed
    return [name for name, check in SANITY_CHECKS.items() if failed(check.judge(result, policy)[0])]


@_sanity_check("iterative_beats_single_step", "PGD (iterative) is at least as strong as FGSM (single step)",
               "masking_tolerance")
def _iterative_beats_single_step(result: dict, policy: dict) -> Verdict:
    tol = policy["masking_tolerance"]
    gap = fixed_models_difference(result["pgd"], result["fgsm"], _level(policy))
    passed = _within([gap], tol)
    return Verdict(passed, gap.value, (f"PGD robust accuracy {_mean(result['pgd']):.3f} minus FGSM {_mean(result['fgsm']):.3f} "
                               f"= {_interval(gap)}; allowed at most masking_tolerance = {tol}"
                               + _inconclusive(passed, "masking_tolerance", tol)), gap)


@_sanity_check("monotone_in_budget", "robust accuracy does not rise as the budget grows", "masking_tolerance")
def _monotone_in_budget(result: dict, policy: dict) -> Verdict:
    tol = policy["masking_tolerance"]
    budgets = sorted(result["curve"])
    accs = [_mean(result["curve"][e]) for e in budgets]
    # each step up in budget: the same models on the same examples, so a paired difference
    rises = [fixed_models_difference(result["curve"][b], result["curve"][a], _level(policy))
             for a, b in zip(budgets, budgets[1:])]
    curve = ", ".join(f"eps {e:g}: {a:.3f}" for e, a in zip(budgets, accs))
    if not rises:
        return Verdict(None, None, (f"not measured: the budget curve has one budget ({curve}), so no rise can be "
                                    "seen; give [tool.swiglu_audit.adversarial] budgets a budget besides eps"))
    passed = _within(rises, tol)
    # the step that decides, whose change is the finding's value and interval: the largest rise
    # where one is beyond the tolerance, else the step whose interval reaches highest (a PASS needs
    # it within)
    deciding = max(rises, key=lambda r: r.value) if passed is False else max(rises, key=lambda r: r.ci_high)
    largest = max(r.value for r in rises)
    return Verdict(passed, deciding.value, (f"rise of robust accuracy with budget at the deciding step "
                                            f"{_interval(deciding)}, the largest rise {largest:+.3f} ({curve}); "
                                            f"allowed masking_tolerance = {tol}"
                                            + _inconclusive(passed, "masking_tolerance", tol)), deciding)


@_sanity_check("large_budget_reaches_chance", "at a very large budget accuracy falls to chance", "chance_margin")
def _large_budget_reaches_chance(result: dict, policy: dict) -> Verdict:
    chance = 1.0 / result["n_classes"]
    acc = fixed_models_mean(result["large"], _level(policy))
    margin = policy["chance_margin"]
    passed = _within([acc], chance + margin)
    return Verdict(passed, acc.value, (f"PGD accuracy at eps = {result.get('large_eps', 'large')} is {acc.value:.3f} "
                               f"({acc.level:.0%} CI [{acc.ci_low:.3f}, {acc.ci_high:.3f}]); chance is {chance:.3f}, "
                               f"allowed chance + chance_margin = {chance + margin:.3f}"
                               + _inconclusive(passed, "chance + chance_margin", round(chance + margin, 6))), acc)


@_sanity_check("more_iterations_change_little", "doubling PGD iterations lowers robust accuracy only a little",
               "masking_tolerance")
def _more_iterations_change_little(result: dict, policy: dict) -> Verdict:
    tol = policy["masking_tolerance"]
    drop = fixed_models_difference(result["pgd"], result["pgd_double"], _level(policy))
    passed = _within([drop], tol)
    return Verdict(passed, drop.value, (f"doubling PGD iterations lowered robust accuracy by {_interval(drop)}; "
                                f"allowed masking_tolerance = {tol}" + _inconclusive(passed, "masking_tolerance", tol)),
                   drop)


def _worst(result: dict, names: list[str]) -> np.ndarray:
    """Per example: unbroken by every attack named (an attack's robust flag is already False on a
    clean error)."""
    return np.logical_and.reduce([result["per_attack"][name] for name in names])


@_sanity_check("black_box_not_stronger", "the black-box attacks do not beat the white-box ones", "black_box_margin")
def _black_box_not_stronger(result: dict, policy: dict) -> Verdict:
    # within one threat model (Linf), every configured attack the registry declares black-box
    # against every white-box one
    configured = list(result["per_attack"])
    black, white = black_box_attacks(configured), white_box_attacks(configured)
    if not black or not white:
        return Verdict(None, None, ("not measured: no black-box and white-box Linf attacks both configured, so a "
                           "gradient-based attack that masked gradients blind would go unnoticed by this check; "
                           "add a black-box attack such as \"square\" to [tool.swiglu_audit.adversarial] attacks"))
    # the inputs that every white-box attack failed on and a black-box one broke: the masking
    # signal itself (a gap of the two robust rates could hide them behind inputs only the
    # white-box attacks broke); the black-box attacks run last, on what the white-box ones left
    only_black = _worst(result, white) & ~_worst(result, black)
    share = fixed_models_mean(only_black, _level(policy))
    margin = policy["black_box_margin"]
    passed = _within([share], margin)
    return Verdict(passed, share.value, (f"share of inputs that every white-box Linf attack failed on and a black-box one "
                                 f"({', '.join(black)}) broke: {share.value:.3f} ({share.level:.0%} CI "
                                 f"[{share.ci_low:.3f}, {share.ci_high:.3f}]); allowed black_box_margin = {margin}"
                                 + _inconclusive(passed, "black_box_margin", margin)), share)


@_sanity_check("gradients_finite_nonzero", "input gradients are finite and non-zero", "max_zero_gradient_share")
def _gradients_finite_nonzero(result: dict, policy: dict) -> Verdict:
    finite = all(g["finite"] for g in result["gradients"])
    zero = max(g["zero_share"] for g in result["gradients"])
    limit = policy["max_zero_gradient_share"]
    return Verdict(finite and zero <= limit, zero, (f"input gradients {'finite' if finite else 'NOT finite'}; share of "
                                            f"examples with an all-zero gradient {zero:.3f}, allowed "
                                            f"max_zero_gradient_share = {limit}"))


@_sanity_check("returns_logits", "the model returns logits, not probabilities")
def _returns_logits(result: dict, policy: dict) -> Verdict:
    probs = any(o["probabilities"] for o in result["outputs"])
    return Verdict(not probs, float(probs), ("outputs are probabilities (rows in [0, 1] summing to 1): attacks on a "
                                     "softmax output see vanishing gradients; return logits" if probs
                                     else "outputs are not probabilities (logits or log-probabilities)"))


@_sanity_check("deterministic_eval", "the forward pass is deterministic in eval mode")
def _deterministic_eval(result: dict, policy: dict) -> Verdict:
    diff = max(o["max_abs_diff_between_runs"] for o in result["outputs"])
    return Verdict(diff == 0.0, diff, (f"two eval-mode forward passes differ by up to {diff:.3g}; a random forward "
                               "pass hides gradients (use EOT to attack it)" if diff else
                               "two eval-mode forward passes are bitwise identical"))
