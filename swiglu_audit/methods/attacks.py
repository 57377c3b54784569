"""Evasion attacks through torchattacks: the attack registry, per-example worst case, and the
gradient and output statistics the sanity checks read.

The torchattacks contract: inputs in [0, 1], the model returns logits, eval mode during the
attack (the model's own mode is restored after). Every adversarial example is checked against its
budget here, not trusted: an example outside its norm ball or outside [0, 1] is projected back
into it before it is judged, a non-finite example counts as broken (never as robust), and the
count of each is reported."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training import batching
from ..training.nn import eval_mode
from .attack_registry import ATTACKS, AttackArgs, AttackParams, AttackSpec


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


def build_attack(name: str, model: nn.Module, params: AttackParams, n_classes: int, eps: float | None = None,
                 steps: int | None = None, seed: int = 0):
    """(torchattacks attack, AttackSpec) for one of the registered attack names. `eps` overrides
    the budget of the attack's own norm (the budget curves); by default Linf attacks use `eps`
    and L2 attacks `eps_l2`."""
    import torchattacks as ta  # slow to import; only the adversarial suite needs it

    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    attack = ATTACKS[name]
    budget = eps if eps is not None else params.eps if attack.norm == "Linf" else params.eps_l2
    args = AttackArgs(budget, params.steps if steps is None else steps, params, n_classes, seed)
    return attack.build(ta, model, args), AttackSpec(name, attack.norm, budget, attack.kind)


def within_budget(x: torch.Tensor, adv: torch.Tensor, spec: AttackSpec, atol: float = 1e-5) -> torch.Tensor:
    """Per-example: adv lies in [0, 1] and within the spec's norm ball around x."""
    delta = (adv - x).flatten(1)
    norm = delta.abs().amax(1) if spec.norm == "Linf" else delta.norm(dim=1)
    ok = norm <= spec.eps + atol
    if float(adv.min()) < -atol or float(adv.max()) > 1 + atol:  # per-example only when needed
        ok &= ((adv >= -atol) & (adv <= 1 + atol)).flatten(1).all(1)
    return ok


def project(x: torch.Tensor, adv: torch.Tensor, spec: AttackSpec) -> torch.Tensor:
    """`adv` moved into the spec's norm ball around x and into [0, 1]."""
    delta = adv - x
    if spec.norm == "Linf":
        delta = delta.clamp(-spec.eps, spec.eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (spec.eps / norms).clamp(max=1.0).view(-1, *[1] * (x.ndim - 1))
    return (x + delta).clamp(0.0, 1.0)


@dataclass
class Judged:
    robust: torch.Tensor  # per example: right clean and right on its (checked) adversarial example
    examples: torch.Tensor  # the adversarial examples, each inside its budget
    out_of_budget: int
    non_finite: int


def judge(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, clean: torch.Tensor, adv: torch.Tensor,
          spec: AttackSpec) -> Judged:
    """An attack's examples of one batch, checked against their budget and judged on `model`.

    An example outside its budget is projected back into it and judged there (a valid attack
    input, so a real measurement); a non-finite one has no valid projection and counts as broken.
    Replacing either by its clean input would count an attack's failure as robustness."""
    finite = torch.isfinite(adv).flatten(1).all(1)
    ok = within_budget(xb, adv, spec) & finite
    out_of_budget = non_finite = 0
    if not bool(ok.all()):  # rare
        out_of_budget, non_finite = int((~ok & finite).sum()), int((~finite).sum())
        adv = torch.where(ok.view(-1, *[1] * (xb.ndim - 1)), adv, project(xb, torch.nan_to_num(adv), spec))
    with torch.no_grad():
        robust = (model(adv).argmax(1) == yb) & clean & finite
    return Judged(robust, adv, out_of_budget, non_finite)


def run_attack(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, params: AttackParams, n_classes: int,
               seed: int, batch_size: int | None = None, eps: float | None = None, steps: int | None = None,
               return_examples: bool = False, attack_model: nn.Module | None = None) -> dict:
    """Per-example robust correctness of `model` under one attack, with cost accounting.

    An example is robust when the model is right on it both clean and after the attack; an
    adversarial example outside its budget is projected back into it (counted in out_of_budget),
    and a non-finite one counts as broken (counted in non_finite).
    `attack_model` is what the attack differentiates (a BPDA or EOT wrapper of `model`); the
    examples are always judged on `model` itself.
    """
    device = next(model.parameters()).device
    batch_size = batch_size or batching.batch_size(model, x[:1], device, gradients=True)
    robust, clean, out_of_budget, non_finite, examples = [], [], 0, 0, []
    started = time.perf_counter()
    with eval_mode(model), PassCounter(model) as counter:
        # the wrapper in eval mode too: torchattacks returns a model it found in train mode (a new
        # module is) to it after each call, which put `model` in train mode for the judging:
        # dropout on, and BatchNorm's running statistics overwritten by the adversarial batch
        wrapper = GradientConnected(attack_model or model).eval()
        attack, spec = build_attack(name, wrapper, params, n_classes, eps, steps, seed)
        torch.manual_seed(seed)  # random starts and restarts are the attacks' only randomness
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            with torch.no_grad():
                c = model(xb).argmax(1) == yb
            if spec.eps > 0:
                counter.active = True  # count the attack's passes, not our own evaluation
                adv = attack(xb, yb).detach()
                counter.active = False
                judged = judge(model, xb, yb, c, adv, spec)
                r, adv = judged.robust, judged.examples
                out_of_budget += judged.out_of_budget
                non_finite += judged.non_finite
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
                    "out_of_budget": out_of_budget, "non_finite": non_finite}}
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
    """Share of examples whose cross-entropy input gradient is zero, and whether all are finite;
    in the attacks' batches (a user's large model on all attacked inputs at once ran out of memory)."""
    device = next(model.parameters()).device
    size = batching.batch_size(model, x[:1], device, gradients=True)
    zero, finite = 0, True
    with eval_mode(model):
        for start in range(0, len(x), size):
            xg = x[start:start + size].to(device).clone().requires_grad_(True)
            loss = F.cross_entropy(model(xg), y[start:start + size].to(device), reduction="sum")
            if not loss.requires_grad:  # the model cut its input out of the graph: no gradient at all
                return {"finite": True, "zero_share": 1.0}
            (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
            if grad is None:
                return {"finite": True, "zero_share": 1.0}
            zero += int((grad.flatten(1).abs().sum(1) == 0).sum())
            finite = finite and bool(torch.isfinite(grad).all())
    return {"finite": finite, "zero_share": zero / len(x)}


@torch.no_grad()
def output_stats(model: nn.Module, x: torch.Tensor) -> dict:
    """Do outputs look like probabilities (rows in [0, 1] summing to 1)? Is eval deterministic?"""
    from ..training.train import predict_logits

    device = next(model.parameters()).device
    a, b = predict_logits(model, x, device), predict_logits(model, x, device)
    rows_are_distributions = bool(((a >= 0) & (a <= 1)).all() and torch.allclose(a.sum(1), torch.ones(len(a), device=a.device), atol=1e-3))
    log_probs = bool((a <= 0).all() and torch.allclose(a.exp().sum(1), torch.ones(len(a), device=a.device), atol=1e-3))
    return {"probabilities": rows_are_distributions, "log_probabilities": log_probs,
            "max_abs_diff_between_runs": float((a - b).abs().max())}
