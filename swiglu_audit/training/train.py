"""Seeded, reproducible training: the same seed gives the same weights on the same platform, by
the same path (a seed trained with its siblings as one stacked model, training/stacked.py, gets
the same batches and the same weights up to the rounding of batched kernels; both are stored
under one cache key, so a cache holds whichever trained it first)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import batching
from .activations import ffn_layers, outlier_point
from .device import autocast
from .nn import eval_mode

# Part of every checkpoint's cache key: bump it when a change to the training loop changes weights
# or what its record holds.
# 2: fused AdamW; 4: learning curves against steps, time and counted FLOPs; 5: stacked seeds,
# batch digests; 6: FFN outliers at every curve point
TRAINER_REVISION = 6

# Each learning-curve point of a clean training also records the FFN's hidden-activation
# statistics (`activations.outlier_point`) on this many validation inputs: how outliers grow.
OUTLIER_PROBE = 128


# Validation accuracy must rise by more than this to count as an improvement for early stopping
# (one example of the digits validation split is 0.0028).
EARLY_STOPPING_MIN_GAIN = 0.001
# ... or the mean training loss fall by more than this. Early stopping serves the fine-tuning on
# poisoned sets, whose clean validation accuracy can stall (easy data saturates at once) while the
# poison is still being learned: a backdoor at 1% whose samples' loss falls by 1 moves the mean
# by 0.01, ten times this, so training goes on while the poisoned set is still being fitted.
EARLY_STOPPING_MIN_LOSS_GAIN = 0.001
# The rule is part of an early-stopped recipe's cache key: checkpoints stopped by an earlier rule train again.
EARLY_STOPPING_RULE = "validation accuracy and training loss both stalled"


@dataclass(frozen=True)
class Recipe:
    """The training recipe. Part of every checkpoint's cache key."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    # Stop when neither validation accuracy nor training loss has improved for this many epochs
    # (0: never). The cosine schedule still spans `epochs`, so a run that does not stop is the
    # same as without it.
    patience: int = 0

    def to_dict(self) -> dict:
        out = dict(vars(self))
        if self.patience:
            out["stop_rule"] = EARLY_STOPPING_RULE
        else:  # absent when off: the cache keys of every existing checkpoint stay valid
            del out["patience"]
        return out


def is_curve_point(step: int, steps_per_epoch: int) -> bool:
    """A learning-curve point inside an epoch (one more ends each epoch): at powers of two, where
    curves climb."""
    return step & (step - 1) == 0 and step % steps_per_epoch != 0


def validation_passes(epochs: int, steps_per_epoch: int) -> int:
    """Passes over the validation split in one training: one per epoch's end and one per curve
    point inside an epoch (what the plan counts)."""
    total = epochs * steps_per_epoch
    return epochs + sum(is_curve_point(1 << k, steps_per_epoch) for k in range(total.bit_length()) if 1 << k <= total)


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int,
                device: torch.device, x_val: torch.Tensor | None = None,
                y_val: torch.Tensor | None = None, outliers: bool = False) -> dict:
    """Train in place with AdamW and a cosine schedule; returns a JSON-safe training record.

    Randomness comes only from `seed`: one generator shuffles the batches, and the model must
    already have been initialised under the same seed by the caller. With `recipe.patience` and a
    validation split, training stops early once neither validation accuracy nor the training loss
    improves any more; the record then says at which epoch (`stopped_epoch`). With `outliers`,
    each curve point also holds the FFN outlier statistics (`ffn`) on OUTLIER_PROBE validation inputs.
    """
    model.to(device).train()
    # The whole set moves to the device once where it fits there; otherwise (a large set on a GPU,
    # a poisoned set whose rows are patched on the fly) each batch is gathered on the host and moved.
    resident = isinstance(x, torch.Tensor) and (device.type == "cpu" or _fits(x, device))
    x, y = (x.to(device) if resident else x), y.to(device)
    order_device = device if resident else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    optimizer = _adamw(model, recipe, device)
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    flops_per_example = None
    history, curve, step, examples = [], [], 0, 0
    best_accuracy, best_loss, best_epoch, stopped_epoch = -1.0, math.inf, 0, None
    started, eval_seconds = time.perf_counter(), 0.0
    layers = ffn_layers(model) if outliers else {}

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
            if layers:
                with eval_mode(model):
                    point["ffn"] = outlier_point(model, x_val[:OUTLIER_PROBE].to(device), layers)
        eval_seconds += time.perf_counter() - now
        return point

    digest = hashlib.blake2b(digest_size=8)  # the batches seen, in order (stacked.batch_digest's twin)
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=generator).to(order_device)
        # summed on the device: one host synchronisation per epoch, not one per step
        epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, len(x), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            digest.update(idx.cpu().numpy().tobytes())
            counter = _flop_counter() if flops_per_example is None else None
            with counter or contextlib.nullcontext():
                with autocast(device):
                    loss = F.cross_entropy(model(x[idx].to(device, non_blocking=True)), y[idx.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if counter is not None:  # counted once: a step's FLOPs are linear in its batch size
                flops_per_example = counter.get_total_flops() / len(idx)
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.detach().double() * len(idx)
            step += 1
            examples += len(idx)
            if is_curve_point(step, steps_per_epoch):
                curve.append(evaluate())
        if not torch.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {float(epoch_loss)} in epoch {epoch + 1}; "
                                     "lower the learning rate in [tool.swiglu_audit.training]")
        point = evaluate()
        curve.append(point)
        entry = {"epoch": epoch + 1, "train_loss": float(epoch_loss) / len(x)}
        entry.update({k: point[k] for k in ("val_loss", "val_accuracy") if k in point})
        history.append(entry)
        if recipe.patience and "val_accuracy" in point:
            improved = False
            if point["val_accuracy"] > best_accuracy + EARLY_STOPPING_MIN_GAIN:
                best_accuracy, improved = point["val_accuracy"], True
            if entry["train_loss"] < best_loss - EARLY_STOPPING_MIN_LOSS_GAIN:
                best_loss, improved = entry["train_loss"], True
            if improved:
                best_epoch = epoch + 1
            elif epoch + 1 - best_epoch >= recipe.patience and epoch + 1 < recipe.epochs:
                stopped_epoch = epoch + 1
                break
    model.eval()
    record = {"seconds": time.perf_counter() - started - eval_seconds, "steps": step, "history": history,
              "curve": curve, "train_flops_per_example": flops_per_example, "eval_seconds": eval_seconds,
              "batch_digest": digest.hexdigest()}
    if recipe.patience:
        record["stopped_epoch"] = stopped_epoch
    return record


def _fits(x: torch.Tensor, device: torch.device) -> bool:
    """Does the training set take at most a quarter of the device's free memory?"""
    try:
        return x.nbytes <= batching.free_memory_bytes(device) // 4
    except RuntimeError:  # a device that cannot say: move batches, which always fits
        return False


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
                   batch_size: int | None = None) -> torch.Tensor:
    """Logits in float32 on the CPU, in eval mode; the model's own mode is restored after. The
    batch follows the device's free memory unless given."""
    batch_size = batch_size or batching.batch_size(model, x[:1], device)
    with eval_mode(model):
        out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((predict_logits(model, x, device).argmax(1) == y.cpu()).float().mean())
