"""The gradient-masking and evaluation sanity checks (Carlini et al. 2019; Athalye et al. 2018):
a registry, one judge per check, each its own finding under `adversarial.SANITY`.

A judge reads the seed-stacked attack results of one model (`measure.adversarial.adversarial`)
and the policy, and returns (passed, statistic, a sentence naming the tolerance); passed is None
where the configured attacks cannot answer the question (a WARN that says what to add, never a
PASS that measured nothing). Accuracies are
means over seeds and examples. Adding a check is one decorated function here and a test in
tests/test_checks.py; the suite parametrizes over the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..methods.attack_registry import black_box_attacks, white_box_attacks

Verdict = tuple[bool | None, float, str]


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
    gap = _mean(result["pgd"]) - _mean(result["fgsm"])
    return gap <= tol, gap, (f"PGD robust accuracy {_mean(result['pgd']):.3f} minus FGSM "
                             f"{_mean(result['fgsm']):.3f} = {gap:+.3f}; allowed at most masking_tolerance = {tol}")


@_sanity_check("monotone_in_budget", "robust accuracy does not rise as the budget grows", "masking_tolerance")
def _monotone_in_budget(result: dict, policy: dict) -> Verdict:
    tol = policy["masking_tolerance"]
    budgets = sorted(result["curve"])
    accs = [_mean(result["curve"][e]) for e in budgets]
    rise = max([b - a for a, b in zip(accs, accs[1:])] + [0.0])
    curve = ", ".join(f"eps {e:g}: {a:.3f}" for e, a in zip(budgets, accs))
    return rise <= tol, rise, f"largest rise of robust accuracy with budget {rise:.3f} ({curve}); allowed masking_tolerance = {tol}"


@_sanity_check("large_budget_reaches_chance", "at a very large budget accuracy falls to chance", "chance_margin")
def _large_budget_reaches_chance(result: dict, policy: dict) -> Verdict:
    chance = 1.0 / result["n_classes"]
    acc = _mean(result["large"])
    margin = policy["chance_margin"]
    return acc <= chance + margin, acc, (f"PGD accuracy at eps = {result.get('large_eps', 'large')} is {acc:.3f}; "
                                         f"chance is {chance:.3f}, allowed chance + chance_margin = {chance + margin:.3f}")


@_sanity_check("more_iterations_change_little", "doubling PGD iterations lowers robust accuracy only a little",
               "masking_tolerance")
def _more_iterations_change_little(result: dict, policy: dict) -> Verdict:
    tol = policy["masking_tolerance"]
    drop = _mean(result["pgd"]) - _mean(result["pgd_double"])
    return drop <= tol, drop, (f"doubling PGD iterations lowered robust accuracy by {drop:+.3f}; "
                               f"allowed masking_tolerance = {tol}")


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
        return None, 0.0, ("not measured: no black-box and white-box Linf attacks both configured, so a "
                           "gradient-based attack that masked gradients blind would go unnoticed by this check; "
                           "add a black-box attack such as \"square\" to [tool.swiglu_audit.adversarial] attacks")
    gap = _mean(_worst(result, white)) - _mean(_worst(result, black))
    margin = policy["black_box_margin"]
    return gap <= margin, gap, (f"white-box Linf worst case {_mean(_worst(result, white)):.3f} minus black-box "
                                f"({', '.join(black)}) {_mean(_worst(result, black)):.3f} = {gap:+.3f}; "
                                f"allowed black_box_margin = {margin}")


@_sanity_check("gradients_finite_nonzero", "input gradients are finite and non-zero", "max_zero_gradient_share")
def _gradients_finite_nonzero(result: dict, policy: dict) -> Verdict:
    finite = all(g["finite"] for g in result["gradients"])
    zero = max(g["zero_share"] for g in result["gradients"])
    limit = policy["max_zero_gradient_share"]
    return finite and zero <= limit, zero, (f"input gradients {'finite' if finite else 'NOT finite'}; share of "
                                            f"examples with an all-zero gradient {zero:.3f}, allowed "
                                            f"max_zero_gradient_share = {limit}")


@_sanity_check("returns_logits", "the model returns logits, not probabilities")
def _returns_logits(result: dict, policy: dict) -> Verdict:
    probs = any(o["probabilities"] for o in result["outputs"])
    return not probs, float(probs), ("outputs are probabilities (rows in [0, 1] summing to 1): attacks on a "
                                     "softmax output see vanishing gradients; return logits" if probs
                                     else "outputs are not probabilities (logits or log-probabilities)")


@_sanity_check("deterministic_eval", "the forward pass is deterministic in eval mode")
def _deterministic_eval(result: dict, policy: dict) -> Verdict:
    diff = max(o["max_abs_diff_between_runs"] for o in result["outputs"])
    return diff == 0.0, diff, (f"two eval-mode forward passes differ by up to {diff:.3g}; a random forward "
                               "pass hides gradients (use EOT to attack it)" if diff else
                               "two eval-mode forward passes are bitwise identical")
