"""Evasion: PGD robust accuracy through torchattacks (inputs in [0, 1], the model returns logits)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..risk import CheckInfo

PGD_ROBUST_ACCURACY = CheckInfo(
    suite="adversarial", check="pgd_robust_accuracy", title="PGD-Linf robust accuracy",
    metric="robust accuracy", rmf=("MEASURE 2.7",), characteristic="secure_resilient",
    attack_class="evasion/white-box", impact="high",
    explanation="Share of test examples still classified correctly after a white-box projected "
                "gradient descent attack (L-infinity budget eps, random start). Low values mean "
                "small, targeted input changes flip the model's decisions.",
    mitigation="Adversarial training (PGD-AT, TRADES), input preprocessing with care for gradient "
               "masking, or certified methods (randomised smoothing) where guarantees are needed.",
)

PGD_COMPARISON = CheckInfo(
    suite="adversarial", check="pgd_robust_accuracy_vs_baseline",
    title="PGD robust accuracy, SwiGLU candidate vs baseline", metric="robust accuracy difference",
    rmf=("MEASURE 2.7", "MAP 2.3"), characteristic="secure_resilient",
    attack_class="evasion/white-box", impact="high",
    explanation="Difference in PGD robust accuracy between the SwiGLU candidate and a baseline "
                "architecture trained on the same data with the same budget, on the same examples.",
    mitigation="If the candidate is less robust, keep the baseline FFN for exposed models, or add "
               "adversarial training to the candidate's recipe and audit again.",
)


def pgd_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                seed: int, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-example clean and PGD-robust correctness (bool arrays), plus cost accounting.

    eps = 0 or steps = 0 skips the attack: robust correctness is then clean correctness.
    """
    import torchattacks  # imported here: it is slow to import and only this check needs it

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    clean, robust = [], []
    started = time.perf_counter()
    try:
        attack = None
        if eps > 0 and steps > 0:
            attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps,
                                      random_start=True)
        torch.manual_seed(seed)  # the random start is the attack's only randomness
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            with torch.no_grad():
                c = model(xb).argmax(1) == yb
            if attack is not None:
                adv = attack(xb, yb)
                with torch.no_grad():
                    r = (model(adv).argmax(1) == yb) & c
            else:
                r = c
            clean.append(c.cpu())
            robust.append(r.cpu())
    finally:
        model.train(was_training)
    cost = {"seconds": time.perf_counter() - started, "forward_backward_passes": len(x) * steps,
            "eps": eps, "steps": steps}
    return torch.cat(clean).numpy(), torch.cat(robust).numpy(), cost
