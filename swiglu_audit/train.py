"""Seeded, reproducible training: the same seed gives the same weights on the same platform."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast
from .nn import eval_mode

# Part of every checkpoint's cache key: bump it when a change to the training loop changes weights
# or what its record holds.
TRAINER_REVISION = 4  # 2: fused AdamW; 4: learning curves against steps, time and counted FLOPs


@dataclass(frozen=True)
class Recipe:
    """The training recipe. Part of every checkpoint's cache key."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4

    def to_dict(self) -> dict:
        return dict(vars(self))


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int,
                device: torch.device, x_val: torch.Tensor | None = None,
                y_val: torch.Tensor | None = None) -> dict:
    """Train in place with AdamW and a cosine schedule; returns a JSON-safe training record.

    Randomness comes only from `seed`: one generator shuffles the batches, and the model must
    already have been initialised under the same seed by the caller.
    """
    model.to(device).train()
    x, y = x.to(device), y.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = _adamw(model, recipe, device)
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    flops_per_example = None
    history, curve, step, examples = [], [], 0, 0
    started, eval_seconds = time.perf_counter(), 0.0

    def evaluate() -> dict:
        """A point of the learning curve; its seconds are training time, evaluation excluded."""
        nonlocal eval_seconds
        _synchronise(device)
        now = time.perf_counter()
        point = {"step": step, "examples": examples, "seconds": now - started - eval_seconds}
        point["flops"] = flops_per_example * point["examples"] if flops_per_example else None
        if x_val is not None:
            logits = predict_logits(model, x_val, device)
            point["val_loss"] = float(F.cross_entropy(logits, y_val.cpu()))
            point["val_accuracy"] = float((logits.argmax(1) == y_val.cpu()).float().mean())
        eval_seconds += time.perf_counter() - now
        return point

    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        # summed on the device: one host synchronisation per epoch, not one per step
        epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, len(x), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            counter = _flop_counter() if flops_per_example is None else None
            with counter or contextlib.nullcontext():
                with autocast(device):
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if counter is not None:  # counted once: a step's FLOPs are linear in its batch size
                flops_per_example = counter.get_total_flops() / len(idx)
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.detach().double() * len(idx)
            step += 1
            examples += len(idx)
            if step & (step - 1) == 0 and step % steps_per_epoch:  # powers of two: resolution where curves climb
                curve.append(evaluate())
        if not torch.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {float(epoch_loss)} in epoch {epoch + 1}; "
                                     "lower the learning rate in [tool.swiglu_audit.training]")
        point = evaluate()
        curve.append(point)
        entry = {"epoch": epoch + 1, "train_loss": float(epoch_loss) / len(x)}
        entry.update({k: point[k] for k in ("val_loss", "val_accuracy") if k in point})
        history.append(entry)
    model.eval()
    return {"seconds": time.perf_counter() - started - eval_seconds, "steps": total_steps, "history": history,
            "curve": curve, "train_flops_per_example": flops_per_example, "eval_seconds": eval_seconds}


def _flop_counter():
    """torch's FLOP counter (it counts the matmuls and convolutions a step dispatches), or None
    where this torch has none."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    return FlopCounterMode(display=False)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _adamw(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a fused kernel for the device: on a CPU it makes the small zoo
    models train about three times faster (the per-parameter Python loop dominates their steps)."""
    kwargs = {"lr": recipe.learning_rate, "weight_decay": recipe.weight_decay}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(model.parameters(), fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # older torch: no fused CPU kernel
            pass
    return torch.optim.AdamW(model.parameters(), **kwargs)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits in float32 on the CPU, in eval mode; the model's own mode is restored after."""
    with eval_mode(model):
        out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((predict_logits(model, x, device).argmax(1) == y.cpu()).float().mean())
