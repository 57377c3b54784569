"""One attack on several trained models of one architecture at once (the seeds of a variant), as
one attack on their `StackedMembers`: each member's copy of the attack set, one after the other.

An evasion attack treats its examples independently (each has its own step, projection, step size
and stopping rule), and an example's input gradient comes from its own member's logits only (the
stacked module routes every row through its own member's weights), so one attack on the stack is
K attacks. Three shapes of attack loop, all torchattacks' own code:
- FGSM, PGD and PGD-L2 pass the model their whole batch at every step: called as they are;
- APGD-CE, APGD-DLR and APGD-T attack the rows still correctly classified (`attack_single_run`
  on that subset, once per restart and, for APGD-T, per target class). Their `perturb` is
  mirrored here so that the stack is told whose rows the subset holds before each run;
- Square picks the rows still to be broken inside its own loop; each row's label carries its
  member (member * classes + label), and its margin is computed routed by that member.
Two attacks of the full profile run one model at a time: AutoAttack's own ensemble passes rows
between attacks that it chooses, and CW-L2 stops early when its loss summed over the whole batch
rises, which stacked would tie each member's stop to the others' losses.

What the members share is one random stream for random starts, restarts and Square's squares, so
a stacked member's attack is its lone attack with other random draws: the same statistical
outcome, not the same bits (FGSM, which draws nothing, gives the lone results up to the rounding
of batched kernels). Every member's examples are checked against the budget and judged on the
member's own model, as `run_attack` does.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

from ..training import batching
from ..training.nn import eval_mode
from .attack_registry import AttackParams
from .attacks import GradientConnected, build_attack, judge
from .stacked_members import StackedMembers

WHOLE_BATCH = frozenset({"fgsm", "pgd", "pgd_l2"})
STILL_CORRECT = frozenset({"apgd_ce", "apgd_dlr", "apgd_t"})
QUERY = frozenset({"square"})
STACKABLE = WHOLE_BATCH | STILL_CORRECT | QUERY


def attack_members(models: list[nn.Module], stacked: StackedMembers, name: str, x: torch.Tensor, y: torch.Tensor,
                   params: AttackParams, n_classes: int, seed: int, eps: float | None = None,
                   steps: int | None = None, return_examples: bool = False, batch_size: int | None = None
                   ) -> list[dict]:
    """`run_attack` of each of `models` (the members of `stacked`, in order), run as one attack:
    a list of `run_attack`'s results, one per member. The attack's random stream is seeded with
    `seed` (the first member's, as its lone attack would be)."""
    if name not in STACKABLE:
        raise ValueError(f"{name!r} does not run stacked; attack the models one by one")
    k = stacked.members
    device = next(models[0].parameters()).device
    # each step holds every member's copy of a batch
    per_member = batch_size or batching.batch_size(models[0], x[:1], device, gradients=True, members=k)
    started = time.perf_counter()
    results = [{"robust": [], "clean": [], "examples": [], "out_of_budget": 0, "non_finite": 0} for _ in models]
    stacked.forward_rows, stacked.backward_rows = [0] * k, [0] * k
    with eval_mode(stacked), contextlib.ExitStack() as modes:
        for model in models:  # judged in eval mode; their own modes restored after
            modes.enter_context(eval_mode(model))
        # in eval mode: torchattacks puts a model it found in train mode back into it afterwards
        attack, spec = build_attack(name, GradientConnected(stacked).eval(), params, n_classes, eps, steps, seed)
        torch.manual_seed(seed)  # random starts and restarts are the attacks' only randomness
        for i in range(0, len(x), per_member):
            xb, yb = x[i:i + per_member].to(device), y[i:i + per_member].to(device)
            with torch.no_grad():
                clean = [m(xb).argmax(1) == yb for m in models]
            if spec.eps > 0:
                xs, ys = xb.repeat(k, *[1] * (xb.ndim - 1)), yb.repeat(k)
                route = torch.arange(k, device=device).repeat_interleave(len(xb))
                stacked.counting = True  # count the attack's passes, not our own evaluation
                try:
                    adv = _run(attack, name, stacked, xs, ys, route, n_classes, torch.cat(clean)).detach()
                finally:
                    stacked.counting = False
            for member, (model, c, out) in enumerate(zip(models, clean, results)):
                if spec.eps > 0:
                    judged = judge(model, xb, yb, c, adv[member * len(xb):(member + 1) * len(xb)], spec)
                    robust, examples = judged.robust, judged.examples
                    out["out_of_budget"] += judged.out_of_budget
                    out["non_finite"] += judged.non_finite
                else:
                    robust, examples = c, xb
                out["clean"].append(c.cpu())
                out["robust"].append(robust.cpu())
                out["examples"].append(examples.cpu())
    seconds = round((time.perf_counter() - started) / k, 4)  # a member's share
    return [_result(out, name, spec, seconds, stacked.forward_rows[m], stacked.backward_rows[m], return_examples)
            for m, out in enumerate(results)]


def _result(out: dict, name: str, spec, seconds: float, forward: int, backward: int, return_examples: bool) -> dict:
    result = {"robust": torch.cat(out["robust"]).numpy(), "clean": torch.cat(out["clean"]).numpy(),
              "cost": {"attack": name, "norm": spec.norm, "eps": spec.eps, "kind": spec.kind, "seconds": seconds,
                       "forward_passes": forward, "backward_passes": backward,
                       "out_of_budget": out["out_of_budget"], "non_finite": out["non_finite"], "stacked": True}}
    if return_examples:
        result["examples"] = torch.cat(out["examples"])
    return result


def _run(attack, name: str, stacked: StackedMembers, xs: torch.Tensor, ys: torch.Tensor, route: torch.Tensor,
         n_classes: int, correct: torch.Tensor) -> torch.Tensor:
    """The attack's examples of every member's copy of a batch. `correct`: the rows each member's
    own model classifies correctly, the rows APGD and Square attack (their own `perturb` asks the
    model; the stack's rounding could differ from the member's at a tie, and a row left
    unattacked there would count as robust)."""
    if name in WHOLE_BATCH:
        return attack(xs, ys)
    if name in STILL_CORRECT:
        return _still_correct_rows(attack, stacked, xs, ys, route, correct.clone())
    return _square(attack, stacked, xs, ys, route, n_classes, correct.clone())


def _still_correct_rows(attack, stacked: StackedMembers, xs, ys, route, correct) -> torch.Tensor:
    """torchattacks' APGD and APGD-T `perturb` (its default, cheap path), with the stack told whose
    rows each subset holds: per restart (and per target class, for APGD-T), `attack_single_run`
    on the rows still correctly classified; a row it fools keeps the example that fooled it."""
    adv = xs.clone()
    torch.random.manual_seed(attack.seed)
    targets = range(2, attack.n_target_classes + 2) if hasattr(attack, "n_target_classes") else [None]
    for target in targets:
        if target is not None:
            attack.target_class = target  # APGD-T: the target-th most likely class
        for _ in range(attack.n_restarts):
            rows = correct.nonzero().flatten()
            if not len(rows):
                break
            with stacked.routed(route[rows]):
                _, still, _, examples = attack.attack_single_run(xs[rows].clone(), ys[rows].clone())
            fooled = still == 0
            correct[rows[fooled]] = False
            adv[rows[fooled]] = examples[fooled].clone()
    return adv


def _square(attack, stacked: StackedMembers, xs, ys, route, n_classes: int, correct) -> torch.Tensor:
    """torchattacks' Square `perturb` (untargeted), with each row's member carried in its label
    (member * n_classes + label) through Square's own loop, which subsets rows itself."""
    own_margin = type(attack).margin_and_loss.__get__(attack)  # Square's own, not an earlier batch's routing

    def routed_margin(x, encoded):
        with stacked.routed(encoded // n_classes):
            return own_margin(x, encoded % n_classes)

    attack.margin_and_loss = routed_margin
    attack.init_hyperparam(xs)
    adv = xs.clone()
    torch.random.manual_seed(attack.seed)
    for _ in range(attack.n_restarts):
        rows = correct.nonzero().flatten()
        if not len(rows):
            break
        _, examples = attack.attack_single_run(xs[rows].clone(), ys[rows] + n_classes * route[rows])
        with torch.no_grad(), stacked.routed(route[rows]):
            fooled = stacked(examples).argmax(1) != ys[rows]
        correct[rows[fooled]] = False
        adv[rows[fooled]] = examples[fooled].clone()
    return adv
