"""The attack registry: each evasion attack's norm, kind, builder and cost, declared once.

Torch-free (the builders receive the torchattacks module when called), so that the plan, the
settings check and the sanity checks read it without importing torch. Running the attacks is
`methods.attacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AttackSpec:
    name: str
    norm: str  # "Linf" or "L2": the ball the result is checked against
    eps: float
    kind: str  # "white-box" or "black-box"


@dataclass(frozen=True)
class AttackParams:
    """The settings the registered attacks read: budgets, iterations and queries."""

    eps: float  # Linf budget
    eps_l2: float = 0.5  # L2 budget
    steps: int = 10  # PGD iterations
    apgd_steps: int = 20
    cw_steps: int = 50
    square_queries: int = 300
    square_restarts: int = 1
    pgd_step_factor: float = 2.5  # PGD's step = pgd_step_factor * eps / steps
    cw_c: float = 1.0
    cw_learning_rate: float = 0.01

    @classmethod
    def of(cls, settings) -> AttackParams:
        """From the adversarial settings section (anything with these attributes)."""
        return cls(settings.eps, settings.eps_l2, settings.steps, settings.apgd_steps, settings.cw_steps,
                   settings.square_queries, pgd_step_factor=settings.pgd_step_factor, cw_c=settings.cw_c,
                   cw_learning_rate=settings.cw_learning_rate)


@dataclass(frozen=True)
class AttackArgs:
    """What a builder may use: the budget of its norm, iterations, the other parameters."""

    eps: float  # of the attack's own norm (eps, or eps_l2 for L2 attacks)
    steps: int
    params: AttackParams
    n_classes: int
    seed: int


# (settings, number of classes) -> (input-gradient passes, forward-only passes) per example
Cost = Callable[[AttackParams, int], tuple[int, int]]


@dataclass(frozen=True)
class Attack:
    norm: str  # "Linf" or "L2": its threat model
    kind: str  # "white-box" or "black-box": black-box attacks are what the sanity check holds the white-box ones to
    build: Callable  # (torchattacks module, model, AttackArgs) -> a torchattacks attack
    cost: Cost  # what the plan counts for it
    # the fewest classes it runs on: the DLR losses read the third-largest logit (APGD-DLR) or,
    # targeted, the fourth (APGD-T, AutoAttack); on fewer, torchattacks raises an IndexError
    min_classes: int = 2
    # a minimum-norm attack (CW-L2) returns the smallest adversarial example it finds, whatever its
    # norm: an example beyond the budget is its failure within the budget, not misbehaviour
    minimum_norm: bool = False


def _gradient_steps(steps: Callable[[AttackParams, int], int]) -> Cost:
    return lambda params, n_classes: (steps(params, n_classes), 0)


# The attack registry. Adding an attack is one entry here (and a test in tests/test_checks.py);
# settings validate `attacks` against these names, the norm puts it in its threat model, the kind
# decides whether the black-box sanity check holds the white-box attacks to it, and the plan
# reads its cost.
ATTACKS: dict[str, Attack] = {
    "fgsm": Attack("Linf", "white-box", lambda ta, m, a: ta.FGSM(m, eps=a.eps), _gradient_steps(lambda p, n: 1)),
    "pgd": Attack("Linf", "white-box", lambda ta, m, a: ta.PGD(
        m, eps=a.eps, alpha=a.params.pgd_step_factor * a.eps / max(a.steps, 1), steps=a.steps, random_start=True),
        _gradient_steps(lambda p, n: p.steps)),
    "pgd_l2": Attack("L2", "white-box", lambda ta, m, a: ta.PGDL2(
        m, eps=a.eps, alpha=a.params.pgd_step_factor * a.eps / max(a.steps, 1), steps=a.steps, random_start=True),
        _gradient_steps(lambda p, n: p.steps)),
    "cw_l2": Attack("L2", "white-box", lambda ta, m, a: ta.CW(
        m, c=a.params.cw_c, kappa=0.0, steps=a.params.cw_steps, lr=a.params.cw_learning_rate),
        _gradient_steps(lambda p, n: p.cw_steps), minimum_norm=True),
    "apgd_ce": Attack("Linf", "white-box", lambda ta, m, a: ta.APGD(
        m, norm="Linf", eps=a.eps, steps=a.params.apgd_steps, loss="ce", seed=a.seed),
        _gradient_steps(lambda p, n: p.apgd_steps)),
    "apgd_dlr": Attack("Linf", "white-box", lambda ta, m, a: ta.APGD(
        m, norm="Linf", eps=a.eps, steps=a.params.apgd_steps, loss="dlr", seed=a.seed),
        _gradient_steps(lambda p, n: p.apgd_steps), min_classes=3),
    # AutoAttack's targeted APGD on the DLR loss, every other class in turn
    "apgd_t": Attack("Linf", "white-box", lambda ta, m, a: ta.APGDT(
        m, norm="Linf", eps=a.eps, steps=a.params.apgd_steps, n_classes=a.n_classes, seed=a.seed),
        _gradient_steps(lambda p, n: p.apgd_steps * (n - 1)), min_classes=4),  # every other class in turn
    "square": Attack("Linf", "black-box", lambda ta, m, a: ta.Square(
        m, norm="Linf", eps=a.eps, n_queries=a.params.square_queries, seed=a.seed,
        n_restarts=a.params.square_restarts),
        lambda p, n: (0, p.square_queries * p.square_restarts)),
    "autoattack": Attack("Linf", "white-box", lambda ta, m, a: ta.AutoAttack(
        m, norm="Linf", eps=a.eps, version="standard", n_classes=a.n_classes, seed=a.seed),
        # APGD-CE, APGD-T over the other classes, FAB-T (about one APGD run), then Square
        lambda p, n: (p.apgd_steps * (n + 1), p.square_queries), min_classes=4),
}


# Attacks run on every attacked input: the sanity checks compare them input by input (PGD against
# FGSM, doubled iterations, the budget curves), and PGD's examples are what the transfer attack
# replays. Every other attack is cascaded (`attack_order`).
EVERY_INPUT = frozenset({"fgsm", "pgd", "pgd_l2"})


def attack_order(attacks) -> list[str]:
    """The order the configured attacks run and are credited in: those run on every input
    (`EVERY_INPUT`), then the cascaded white-box attacks, then the black-box ones, each group in
    its configured order. A cascaded attack runs only on the inputs that every earlier attack of
    its threat model failed on (AutoAttack's protocol): an input already broken stays broken
    whatever a later attack does, so the worst case is the same, for a fraction of the work. The
    black-box attacks come last, so that what they break is what the white-box ones could not
    (the black-box sanity check's question)."""
    attacks = list(attacks)
    every = [a for a in attacks if a in EVERY_INPUT]
    white = [a for a in attacks if a not in EVERY_INPUT and ATTACKS[a].kind == "white-box"]
    return every + white + [a for a in attacks if a not in EVERY_INPUT and ATTACKS[a].kind == "black-box"]


def attack_cost(name: str, params: AttackParams, n_classes: int) -> tuple[int, int]:
    """(input-gradient passes, forward passes) per example of one registered attack."""
    return ATTACKS[name].cost(params, n_classes)


def black_box_attacks(attacks, norm: str = "Linf") -> list[str]:
    """The configured black-box attacks of one norm, in their configured order."""
    return [a for a in attacks if ATTACKS[a].kind == "black-box" and ATTACKS[a].norm == norm]


def white_box_attacks(attacks, norm: str = "Linf") -> list[str]:
    """The configured white-box attacks of one norm, in their configured order."""
    return [a for a in attacks if ATTACKS[a].kind == "white-box" and ATTACKS[a].norm == norm]


# One threat model per number: a worst case is taken within one norm (ATTACKS below names each
# attack's).
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}  # the findings' aspect -> the attacks' norm


def threat_attacks(attacks, threat: str) -> list[str]:
    """The configured attacks of one threat model, in their configured order."""
    return [a for a in attacks if a in ATTACKS and ATTACKS[a].norm == THREAT_MODELS[threat]]


def describe_threat(threat: str, eps: float, eps_l2: float, modality: str = "image") -> str:
    """The threat model in words, named in every robustness sentence: "Linf, eps = 0.1" (for
    (N, D) data the budget is in the units of the features as scaled to [0, 1])."""
    text = f"Linf, eps = {eps:g}" if threat == "linf" else f"L2, eps = {eps_l2:g}"
    return text + (" in scaled feature units" if modality == "tabular" else "")
