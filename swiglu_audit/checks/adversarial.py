"""Evasion attacks through torchattacks, per-example worst case, and gradient-masking sanity checks.

The torchattacks contract: inputs in [0, 1], the model returns logits, eval mode during the
attack (the model's own mode is restored after). Every adversarial example is checked against its
budget here, not trusted: an example outside its norm ball or outside [0, 1] never counts as a
successful attack, and the count of such examples is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import batching
from ..nn import eval_mode
from ..risk import CheckInfo, Floor, NoWorseThanBaseline

_EVASION_MITIGATION = ("Adversarial training (PGD-AT, TRADES) in the candidate's recipe, input "
                       "preprocessing only with care for gradient masking, or certified methods "
                       "(randomised smoothing) where guarantees are needed.")

WORST_CASE = CheckInfo(
    suite="adversarial", check="worst_case_robust_accuracy",
    title="Worst-case robust accuracy within one threat model",
    metric="robust accuracy (worst case over the attacks of one threat model)", rmf=("MEASURE 2.7",),
    characteristic="secure_resilient", attack_class="evasion/white-box", impact="high",
    explanation="Share of test examples that every attack of one threat model (Linf at eps, or L2 "
                "at eps_l2; white-box and black-box) failed to misclassify: one number per threat "
                "model, comparable with AutoAttack and RobustBench figures for the same norm and "
                "budget. An example counts as robust only if all those attacks failed on it; the "
                "details name the attack that broke each example. For a model whose gradient-masking "
                "checks fail, stronger attacks are added and the finding is at best inconclusive.",
    mitigation=_EVASION_MITIGATION,
    condition=Floor("warn_below_robust_accuracy", "robust accuracy"),
)

WORST_CASE_COMPARISON = CheckInfo(
    suite="adversarial", check="worst_case_robust_accuracy_vs_baseline",
    title="Worst-case robust accuracy, SwiGLU candidate vs baseline", metric="robust accuracy difference",
    rmf=("MEASURE 2.7", "MAP 2.3"), characteristic="secure_resilient", attack_class="evasion/white-box",
    impact="high",
    explanation="Difference in worst-case robust accuracy (one threat model per finding) between the "
                "SwiGLU candidate and a baseline trained on the same data with the same budget, on the "
                "same examples.",
    mitigation="If the candidate is less robust, keep the baseline FFN for exposed models, or add "
               "adversarial training to the candidate's recipe and audit again.",
    condition=NoWorseThanBaseline("max_robust_accuracy_drop"),
)

TRANSFER = CheckInfo(
    suite="adversarial", check="transfer_attack_vs_baseline",
    title="Transfer attacks between the SwiGLU candidate and a baseline", metric="accuracy under transferred examples (difference)",
    rmf=("MEASURE 2.7",), characteristic="secure_resilient", attack_class="evasion/transfer", impact="moderate",
    explanation="PGD examples crafted on the baseline are fed to the candidate, and examples crafted on "
                "the candidate to the baseline; the finding compares the two accuracies. A transfer "
                "attacker needs no access to the deployed model, only to a similar one.",
    mitigation="Ensemble adversarial training; keep model weights and architecture details private.",
    condition=NoWorseThanBaseline("max_robust_accuracy_drop"),
)

SANITY = CheckInfo(
    suite="adversarial", check="evaluation_sanity", title="Gradient-masking and evaluation sanity check",
    metric="sanity statistic", rmf=("MEASURE 2.13", "MEASURE 2.7"), characteristic="secure_resilient",
    attack_class="evasion/white-box", impact="high",
    explanation="Checks that the robustness evaluation itself is trustworthy (Carlini et al. 2019, "
                "'On Evaluating Adversarial Robustness'; Athalye et al. 2018). A tripped check means "
                "gradient-based attacks may be failing for reasons other than robustness (masked or "
                "obfuscated gradients, probabilities instead of logits, randomness), so robust "
                "accuracy would be overstated.",
    mitigation="Treat the model's robust accuracy as unproven: use gradient-free and adaptive attacks "
               "(Square, BPDA, EOT), remove non-differentiable preprocessing from the audited "
               "forward pass, and make the model return logits.",
)

# The eight sanity checks, each its own finding: name -> (what it asks, policy key of its tolerance)
SANITY_CHECKS = {
    "iterative_beats_single_step": ("PGD (iterative) is at least as strong as FGSM (single step)", "masking_tolerance"),
    "monotone_in_budget": ("robust accuracy does not rise as the budget grows", "masking_tolerance"),
    "large_budget_reaches_chance": ("at a very large budget accuracy falls to chance", "chance_margin"),
    "more_iterations_change_little": ("doubling PGD iterations lowers robust accuracy only a little", "masking_tolerance"),
    "black_box_not_stronger": ("the black-box attack does not beat the white-box ones", "black_box_margin"),
    "gradients_finite_nonzero": ("input gradients are finite and non-zero", "max_zero_gradient_share"),
    "returns_logits": ("the model returns logits, not probabilities", None),
    "deterministic_eval": ("the forward pass is deterministic in eval mode", None),
}


class PassCounter:
    """Counts the forward and backward passes (in examples) a model makes while `active`.

    A forward hook on the model itself rather than a wrapper module: the attack calls the model
    directly, and the count costs one hook call per pass.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.active = False
        self.forward_examples = 0
        self.backward_examples = 0
        self._handle = None

    def _on_forward(self, module, inputs, output):
        if not self.active:
            return
        n = len(inputs[0])
        self.forward_examples += n
        if output.requires_grad:
            output.register_hook(lambda grad: self._on_backward(n))

    def _on_backward(self, n: int) -> None:
        self.backward_examples += n

    def __enter__(self) -> PassCounter:
        self._handle = self.model.register_forward_hook(self._on_forward)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


# One threat model per number: a worst case is taken within one norm (ATTACKS below names each
# attack's).
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}  # the findings' aspect -> the attacks' norm


def threat_attacks(attacks, threat: str) -> list[str]:
    """The configured attacks of one threat model, in their configured order."""
    return [a for a in attacks if ATTACK_NORMS.get(a) == THREAT_MODELS[threat]]


def describe_threat(threat: str, cfg: dict, modality: str = "image") -> str:
    """The threat model in words, named in every robustness sentence: "Linf, eps = 0.1" (for
    (N, D) data the budget is in the units of the features as scaled to [0, 1])."""
    text = f"Linf, eps = {cfg['eps']:g}" if threat == "linf" else f"L2, eps = {cfg['eps_l2']:g}"
    return text + (" in scaled feature units" if modality == "tabular" else "")


class StraightThrough(nn.Module):
    """BPDA (Athalye et al. 2018): the model's own forward pass, with the gradients of a
    differentiable stand-in. `surrogate(x)` must approximate `model(x)` (for a model that rounds
    or thresholds its input, the same network without that step)."""

    def __init__(self, model: nn.Module, surrogate):
        super().__init__()
        self.model = model
        self.surrogate = surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        approx = self.surrogate(x)
        return self.model(x).detach() + approx - approx.detach()


class ExpectationOverRandomness(nn.Module):
    """EOT (Athalye et al. 2018): the mean logits of `samples` forward passes of a model whose
    forward pass is random, so that an attack follows the expected gradient."""

    def __init__(self, model: nn.Module, samples: int = 8):
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


class GradientConnected(nn.Module):
    """The model, with its output tied to its input by a zero term. A model that cuts its input
    out of the graph (thresholding it, say) would make an attack's autograd call fail; with this
    tie the attack sees the zero gradient it really has, and the masking checks flag it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out + 0.0 * x.flatten(1).sum(1, keepdim=True).to(out.dtype)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    norm: str  # "Linf" or "L2": the ball the result is checked against
    eps: float
    kind: str  # "white-box" or "black-box"


@dataclass(frozen=True)
class AttackArgs:
    """What a builder may use: the budget of its norm, iterations, the section's settings."""

    eps: float  # of the attack's own norm (eps, or eps_l2 for L2 attacks)
    steps: int
    cfg: dict
    n_classes: int
    seed: int


@dataclass(frozen=True)
class Attack:
    norm: str  # "Linf" or "L2": its threat model
    kind: str  # "white-box" or "black-box"
    build: Callable  # (torchattacks module, model, AttackArgs) -> a torchattacks attack


# The attack registry. Adding an attack is one entry here (and a test in tests/test_checks.py);
# settings validate `attacks` against these names, and the norm puts it in its threat model.
ATTACKS: dict[str, Attack] = {
    "fgsm": Attack("Linf", "white-box", lambda ta, m, a: ta.FGSM(m, eps=a.eps)),
    "pgd": Attack("Linf", "white-box", lambda ta, m, a: ta.PGD(
        m, eps=a.eps, alpha=2.5 * a.eps / max(a.steps, 1), steps=a.steps, random_start=True)),
    "pgd_l2": Attack("L2", "white-box", lambda ta, m, a: ta.PGDL2(
        m, eps=a.eps, alpha=2.5 * a.eps / max(a.steps, 1), steps=a.steps, random_start=True)),
    "cw_l2": Attack("L2", "white-box", lambda ta, m, a: ta.CW(m, c=1.0, kappa=0.0, steps=a.cfg["cw_steps"], lr=0.01)),
    "apgd_ce": Attack("Linf", "white-box", lambda ta, m, a: ta.APGD(
        m, norm="Linf", eps=a.eps, steps=a.cfg["apgd_steps"], loss="ce", seed=a.seed)),
    "apgd_dlr": Attack("Linf", "white-box", lambda ta, m, a: ta.APGD(
        m, norm="Linf", eps=a.eps, steps=a.cfg["apgd_steps"], loss="dlr", seed=a.seed)),
    # AutoAttack's targeted APGD on the DLR loss, every other class in turn
    "apgd_t": Attack("Linf", "white-box", lambda ta, m, a: ta.APGDT(
        m, norm="Linf", eps=a.eps, steps=a.cfg["apgd_steps"], n_classes=a.n_classes, seed=a.seed)),
    "square": Attack("Linf", "black-box", lambda ta, m, a: ta.Square(
        m, norm="Linf", eps=a.eps, n_queries=a.cfg["square_queries"], seed=a.seed,
        n_restarts=a.cfg.get("square_restarts", 1))),
    "autoattack": Attack("Linf", "white-box", lambda ta, m, a: ta.AutoAttack(
        m, norm="Linf", eps=a.eps, version="standard", n_classes=a.n_classes, seed=a.seed)),
}
ATTACK_NORMS = {name: attack.norm for name, attack in ATTACKS.items()}


def build_attack(name: str, model: nn.Module, cfg: dict, n_classes: int, eps: float | None = None,
                 steps: int | None = None, seed: int = 0):
    """(torchattacks attack, AttackSpec) for one of the registered attack names. `eps` overrides
    the budget of the attack's own norm (the budget curves); by default Linf attacks use `eps`
    and L2 attacks `eps_l2`."""
    import torchattacks as ta  # slow to import; only the adversarial suite needs it

    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    attack = ATTACKS[name]
    budget = eps if eps is not None else cfg["eps"] if attack.norm == "Linf" else cfg["eps_l2"]
    args = AttackArgs(budget, cfg["steps"] if steps is None else steps, cfg, n_classes, seed)
    return attack.build(ta, model, args), AttackSpec(name, attack.norm, budget, attack.kind)


def within_budget(x: torch.Tensor, adv: torch.Tensor, spec: AttackSpec, atol: float = 1e-5) -> torch.Tensor:
    """Per-example: adv lies in [0, 1] and within the spec's norm ball around x."""
    delta = (adv - x).flatten(1)
    norm = delta.abs().amax(1) if spec.norm == "Linf" else delta.norm(dim=1)
    ok = norm <= spec.eps + atol
    if float(adv.min()) < -atol or float(adv.max()) > 1 + atol:  # per-example only when needed
        ok &= ((adv >= -atol) & (adv <= 1 + atol)).flatten(1).all(1)
    return ok


def run_attack(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, cfg: dict, n_classes: int,
               seed: int, batch_size: int | None = None, eps: float | None = None, steps: int | None = None,
               return_examples: bool = False, attack_model: nn.Module | None = None) -> dict:
    """Per-example robust correctness of `model` under one attack, with cost accounting.

    An example is robust when the model is right on it both clean and after the attack; an
    adversarial example outside its budget is not a success (and is counted in out_of_budget).
    `attack_model` is what the attack differentiates (a BPDA or EOT wrapper of `model`); the
    examples are always judged on `model` itself.
    """
    device = next(model.parameters()).device
    batch_size = batch_size or batching.batch_size(model, x[:1], device, gradients=True)
    robust, clean, out_of_budget, examples = [], [], 0, []
    started = time.perf_counter()
    with eval_mode(model), PassCounter(model) as counter:
        attack, spec = build_attack(name, GradientConnected(attack_model or model), cfg, n_classes, eps, steps, seed)
        torch.manual_seed(seed)  # random starts and restarts are the attacks' only randomness
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            with torch.no_grad():
                c = model(xb).argmax(1) == yb
            if spec.eps > 0:
                counter.active = True  # count the attack's passes, not our own evaluation
                adv = attack(xb, yb).detach()
                counter.active = False
                ok = within_budget(xb, adv, spec)
                if not bool(ok.all()):  # rare: replace offending examples by their clean input
                    out_of_budget += int((~ok).sum())
                    adv = torch.where(ok.view(-1, *[1] * (xb.ndim - 1)), adv, xb)
                with torch.no_grad():
                    r = (model(adv).argmax(1) == yb) & c
            else:
                adv, r = xb, c
            clean.append(c.cpu())
            robust.append(r.cpu())
            if return_examples:
                examples.append(adv.cpu())
    out = {"robust": torch.cat(robust).numpy(), "clean": torch.cat(clean).numpy(),
           "cost": {"attack": name, "norm": spec.norm, "eps": spec.eps, "kind": spec.kind,
                    "seconds": round(time.perf_counter() - started, 4),
                    "forward_passes": counter.forward_examples, "backward_passes": counter.backward_examples,
                    "out_of_budget": out_of_budget}}
    if return_examples:
        out["examples"] = torch.cat(examples)
    return out


def worst_case(per_attack: dict[str, np.ndarray], clean: np.ndarray
               ) -> tuple[np.ndarray, dict[str, int], list[str]]:
    """Robust only if clean-correct and every attack failed. Each broken example is credited to
    the first attack (in the given order) that succeeded; returns the robust mask, the count per
    attack, and per example the name of what broke it ("clean" when the model was already wrong,
    "robust" when nothing did)."""
    robust = clean.copy()
    broken_by = {"clean": int((~clean).sum())}
    who = np.where(clean, "robust", "clean").astype(object)
    for name, r in per_attack.items():
        newly = robust & ~r
        broken_by[name] = int(newly.sum())
        who[newly] = name
        robust &= r
    return robust, broken_by, who.tolist()


def input_gradient_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Share of examples whose cross-entropy input gradient is zero, and whether all are finite."""
    device = next(model.parameters()).device
    with eval_mode(model):
        xg = x.to(device).clone().requires_grad_(True)
        loss = F.cross_entropy(model(xg), y.to(device), reduction="sum")
        if not loss.requires_grad:  # the model cut its input out of the graph: no gradient at all
            return {"finite": True, "zero_share": 1.0}
        (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
        if grad is None:
            return {"finite": True, "zero_share": 1.0}
    per_example = grad.flatten(1).abs().sum(1)
    return {"finite": bool(torch.isfinite(grad).all()),
            "zero_share": float((per_example == 0).float().mean())}


@torch.no_grad()
def output_stats(model: nn.Module, x: torch.Tensor) -> dict:
    """Do outputs look like probabilities (rows in [0, 1] summing to 1)? Is eval deterministic?"""
    device = next(model.parameters()).device
    with eval_mode(model):
        a, b = model(x.to(device)).float(), model(x.to(device)).float()
    rows_are_distributions = bool(((a >= 0) & (a <= 1)).all() and torch.allclose(a.sum(1), torch.ones(len(a), device=a.device), atol=1e-3))
    log_probs = bool((a <= 0).all() and torch.allclose(a.exp().sum(1), torch.ones(len(a), device=a.device), atol=1e-3))
    return {"probabilities": rows_are_distributions, "log_probabilities": log_probs,
            "max_abs_diff_between_runs": float((a - b).abs().max())}


def masking_failures(result: dict, policy: dict) -> list[str]:
    """The sanity checks a model fails: any one means its gradient-based numbers are untrustworthy."""
    return [check for check in SANITY_CHECKS if not sanity_verdict(check, result, policy)[0]]


def sanity_verdict(check: str, result: dict, policy: dict) -> tuple[bool, float, str]:
    """(passed, statistic, sentence naming the tolerance) for one sanity check.

    `result` is the seed-stacked output of measure.adversarial.adversarial. Accuracies are means over
    seeds and examples.
    """
    mean = lambda m: float(np.mean(m))
    tol = policy["masking_tolerance"]
    if check == "iterative_beats_single_step":
        gap = mean(result["pgd"]) - mean(result["fgsm"])
        return gap <= tol, gap, (f"PGD robust accuracy {mean(result['pgd']):.3f} minus FGSM "
                                 f"{mean(result['fgsm']):.3f} = {gap:+.3f}; allowed at most masking_tolerance = {tol}")
    if check == "monotone_in_budget":
        budgets = sorted(result["curve"])
        accs = [mean(result["curve"][e]) for e in budgets]
        rise = max([b - a for a, b in zip(accs, accs[1:])] + [0.0])
        curve = ", ".join(f"eps {e:g}: {a:.3f}" for e, a in zip(budgets, accs))
        return rise <= tol, rise, f"largest rise of robust accuracy with budget {rise:.3f} ({curve}); allowed masking_tolerance = {tol}"
    if check == "large_budget_reaches_chance":
        chance = 1.0 / result["n_classes"]
        acc = mean(result["large"])
        margin = policy["chance_margin"]
        return acc <= chance + margin, acc, (f"PGD accuracy at eps = {result.get('large_eps', 'large')} is {acc:.3f}; "
                                             f"chance is {chance:.3f}, allowed chance + chance_margin = {chance + margin:.3f}")
    if check == "more_iterations_change_little":
        drop = mean(result["pgd"]) - mean(result["pgd_double"])
        return drop <= tol, drop, (f"doubling PGD iterations lowered robust accuracy by {drop:+.3f}; "
                                   f"allowed masking_tolerance = {tol}")
    if check == "black_box_not_stronger":
        if result["square"] is None:
            return True, 0.0, "no black-box attack configured; nothing to compare (add \"square\" to attacks)"
        white = np.ones_like(result["clean"], dtype=bool) & result["clean"]
        for name, r in result["per_attack"].items():
            if name != "square" and ATTACK_NORMS.get(name) == "Linf":  # Square's own threat model
                white &= r
        gap = mean(white) - mean(result["square"])
        margin = policy["black_box_margin"]
        return gap <= margin, gap, (f"white-box Linf worst case {mean(white):.3f} minus Square {mean(result['square']):.3f} "
                                    f"= {gap:+.3f}; allowed black_box_margin = {margin}")
    if check == "gradients_finite_nonzero":
        finite = all(g["finite"] for g in result["gradients"])
        zero = max(g["zero_share"] for g in result["gradients"])
        limit = policy["max_zero_gradient_share"]
        return finite and zero <= limit, zero, (f"input gradients {'finite' if finite else 'NOT finite'}; share of "
                                                f"examples with an all-zero gradient {zero:.3f}, allowed "
                                                f"max_zero_gradient_share = {limit}")
    if check == "returns_logits":
        probs = any(o["probabilities"] for o in result["outputs"])
        return not probs, float(probs), ("outputs are probabilities (rows in [0, 1] summing to 1): attacks on a "
                                         "softmax output see vanishing gradients; return logits" if probs
                                         else "outputs are not probabilities (logits or log-probabilities)")
    if check == "deterministic_eval":
        diff = max(o["max_abs_diff_between_runs"] for o in result["outputs"])
        return diff == 0.0, diff, (f"two eval-mode forward passes differ by up to {diff:.3g}; a random forward "
                                   "pass hides gradients (use EOT to attack it)" if diff else
                                   "two eval-mode forward passes are bitwise identical")
    raise ValueError(f"unknown sanity check {check!r}")
