"""Several models of one architecture trained as one stacked model.

The audit is bound by per-step overhead, not arithmetic: a training step of the zoo's MLP is
about 21 MFLOP, which two CPU cores do in a fraction of the ~1 ms the step takes. Stacking the
seeds of a variant puts each layer's weights of every member along a leading dimension
(`torch.func.stack_module_state`) and runs one `vmap`ped forward and backward pass for all of them:
one step's overhead for K members.

Each member stays its own training, as `train.train_model` would run it:
- its own initialisation (the caller builds each member under its own seed) and its own data
  order (a generator per member, seeded as the lone training seeds it);
- its own data: a member may train on a poisoned set the others do not see (equal lengths);
- its own optimiser state: AdamW is elementwise, so one AdamW over the stacked tensors updates
  each member from its own gradients and moments, as its own optimiser would; the loss is the
  sum of the members' mean losses, so a member's gradients are its own loss's alone;
- its own early stopping: a member that stops is frozen (its weights at that epoch are kept and
  written back at the end) while the others go on;
- its own record: history, learning curve, the batches it saw (`batch_digest`).
The results are the members' lone trainings up to the rounding of batched kernels, which a long
training carries on: after 30 epochs on digits the largest weight difference was 1e-6 to 0.07,
with the same final validation accuracies to within one or two examples (bench/stacked-cpu.json).
A member that stops early is frozen but still computed with the others until the stack ends.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import re
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .activations import ffn_layers, outlier_point
from .device import autocast
from .train import (
    EARLY_STOPPING_MIN_GAIN,
    EARLY_STOPPING_MIN_LOSS_GAIN,
    OUTLIER_PROBE,
    Recipe,
    _fits,
    _flop_counter,
    is_curve_point,
)


def stackable(modules: list[nn.Module]) -> str | None:
    """Why these modules cannot train as one stacked model, or None when they can."""
    if len(modules) < 2:
        return "a single model"
    shapes = [{name: tuple(p.shape) for name, p in m.named_parameters()} for m in modules]
    if any(s != shapes[0] for s in shapes[1:]) or any(type(m) is not type(modules[0]) for m in modules[1:]):
        return "the models differ in their parameters"
    for module in modules[0].modules():
        # running statistics are updated in place in training mode, which vmap rejects (other
        # buffers, such as a fixed normalisation, are read as they are; a model that writes one
        # in place fails its first stacked step, and trains alone: NotStackable)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return f"{type(module).__name__} updates its running statistics in place"
    return None


class NotStackable(ValueError):
    """These models cannot train as one stacked model; train them one by one."""


def run_member_by_member(warned: list[str]) -> str | None:
    """Why a stacked pass would be slower than lone ones, from the warnings vmap gave during it:
    an operation with no batching rule, which vmap runs member by member (the zoo ViT's attention
    on a CPU); None where it gave none. The operation is named in the audit's words (torch's own
    warning asks the reader to file an issue with torch)."""
    slow = [message for message in warned if "batching rule" in message]
    if not slow:
        return None
    ops = sorted({op for message in slow for op in re.findall(r"aten::\w+(?:\.\w+)?", message)})  # name.overload
    what = ", ".join(ops) if ops else "an operation of the model"
    return f"vmap has no batching rule for {what}, so stacked it would run member by member"


def batch_digest() -> hashlib.blake2b:
    """A running digest of the batches a training saw (their indices, in order): the lone and the
    stacked trainings of one seed must give the same one."""
    return hashlib.blake2b(digest_size=8)


def train_stacked(modules: list[nn.Module], inputs: list[torch.Tensor], labels: list[torch.Tensor],
                  recipe: Recipe, seeds: list[int], device: torch.device,
                  x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                  outliers: bool = False) -> list[dict]:
    """Train `modules` (one architecture, each built under its seed) in place, member k on
    (inputs[k], labels[k]) with the data order of seeds[k]; one record per member, as
    `train.train_model` returns it, plus "stacked": K and "batch_digest"."""
    k_members = len(modules)
    if len({len(x) for x in inputs}) != 1:
        raise NotStackable("stacked members need training sets of one length")
    why = stackable(modules)
    if why and k_members > 1:
        raise NotStackable(f"these models cannot be stacked: {why}")
    for m in modules:
        m.to(device).train()
    params, buffers = stack_module_state(modules)
    template = copy.deepcopy(modules[0]).to("meta")
    # a real copy to hook: each member's FFN outliers at a curve point, as its lone training records them
    probe_model = copy.deepcopy(modules[0]).eval()
    layers = ffn_layers(probe_model) if outliers else {}

    def forward(p, b, x):
        return functional_call(template, (p, b), (x,))

    batched = vmap(forward)
    gather = _batches(inputs, labels, device)
    n = len(inputs[0])
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    digests = [batch_digest() for _ in seeds]
    optimizer = _stacked_adamw(list(params.values()), recipe, device)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    records = [{"history": [], "curve": [], "stacked": k_members} for _ in seeds]
    active = torch.ones(k_members, dtype=torch.bool)
    frozen: dict[int, dict[str, torch.Tensor]] = {}
    best = [(-1.0, math.inf, 0) for _ in seeds]  # (accuracy, loss, epoch)
    step = examples = 0
    flops_per_example: float | None = None
    started, eval_seconds = time.perf_counter(), 0.0

    def evaluate() -> list[dict]:
        nonlocal eval_seconds
        now = time.perf_counter()
        points = [{"step": step, "examples": examples, "seconds": (now - started - eval_seconds) / k_members}
                  for _ in seeds]
        for point in points:
            point["flops"] = flops_per_example * examples if flops_per_example else None
        if x_val is not None:
            template.eval()  # as predict_logits evaluates a lone model
            logits = _stacked_logits(batched, params, buffers, x_val, device)  # (K, N_val, C)
            template.train()
            probe = x_val[:OUTLIER_PROBE].to(device)
            for k, point in enumerate(points):
                point["val_loss"] = float(F.cross_entropy(logits[k], y_val.cpu()))
                point["val_accuracy"] = float((logits[k].argmax(1) == y_val.cpu()).float().mean())
                if layers:
                    member = ({name: p[k] for name, p in params.items()}, {name: b[k] for name, b in buffers.items()})
                    point["ffn"] = outlier_point(probe_model, probe, layers,
                                                 forward=lambda x, m=member: functional_call(probe_model, m, (x,)))
        eval_seconds += time.perf_counter() - now
        return points

    for epoch in range(recipe.epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])  # (K, N), on the host
        epoch_loss = torch.zeros(k_members, dtype=torch.float64, device=device)
        for start in range(0, n, recipe.batch_size):
            idx = orders[:, start:start + recipe.batch_size]  # (K, B): each member's own batch
            for k in range(k_members):
                digests[k].update(idx[k].cpu().numpy().tobytes())
            xb, yb = gather(idx)
            counter = _flop_counter() if step == 0 else None
            try:
                with counter or contextlib.nullcontext(), autocast(device), warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    logits = batched(params, buffers, xb)  # (K, B, C)
                    per_member = F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(),
                                                 reduction="none").view(k_members, -1).mean(1)
                    optimizer.zero_grad(set_to_none=True)
                    per_member.sum().backward()
            except RuntimeError as exc:
                if step == 0:  # the model does something vmap cannot batch (an in-place buffer update)
                    raise NotStackable(f"the model cannot run batched over members ({exc})") from exc
                raise
            slow = run_member_by_member([str(w.message) for w in said])
            if step == 0 and slow:
                # stacked is then slower than alone (measured: 2.0 s against 1.4-1.8 s for 3 seeds;
                # with attention written as matmuls, which vmap batches, still 1.13-1.19x slower)
                raise NotStackable(slow)
            for w in said:
                if "batching rule" not in str(w.message):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if counter is not None:  # a step's FLOPs over its examples, all members together
                flops_per_example = counter.get_total_flops() / (k_members * idx.shape[1])
            optimizer.step()
            scheduler.step()
            epoch_loss += per_member.detach().double() * idx.shape[1]
            step += 1
            examples += idx.shape[1]
            if is_curve_point(step, steps_per_epoch):
                for k, point in enumerate(evaluate()):
                    if active[k]:
                        records[k]["curve"].append(point)
        if not torch.isfinite(epoch_loss[active.to(epoch_loss.device)]).all():
            raise FloatingPointError(f"training loss became non-finite in epoch {epoch + 1}; "
                                     "lower the learning rate in [tool.swiglu_audit.training]")
        points = evaluate()
        for k, point in enumerate(points):
            if not active[k]:
                continue
            records[k]["curve"].append(point)
            entry = {"epoch": epoch + 1, "train_loss": float(epoch_loss[k]) / n}
            entry.update({key: point[key] for key in ("val_loss", "val_accuracy") if key in point})
            records[k]["history"].append(entry)
            if recipe.patience and "val_accuracy" in point:
                accuracy, loss, best_epoch = best[k]
                improved = False
                if point["val_accuracy"] > accuracy + EARLY_STOPPING_MIN_GAIN:
                    accuracy, improved = point["val_accuracy"], True
                if entry["train_loss"] < loss - EARLY_STOPPING_MIN_LOSS_GAIN:
                    loss, improved = entry["train_loss"], True
                best_epoch = epoch + 1 if improved else best_epoch
                best[k] = (accuracy, loss, best_epoch)
                if not improved and epoch + 1 - best_epoch >= recipe.patience and epoch + 1 < recipe.epochs:
                    # stopped here, as its lone training would: keep these weights, train on without it
                    active[k] = False
                    frozen[k] = {name: p[k].detach().clone() for name, p in params.items()}
                    records[k]["stopped_epoch"] = epoch + 1
                    records[k]["steps"] = step
        if not active.any():
            break
    seconds = (time.perf_counter() - started - eval_seconds) / k_members
    for k, module in enumerate(modules):
        state = frozen.get(k) or {name: p[k].detach() for name, p in params.items()}
        # buffers as the state dict holds them (not the non-persistent ones: masks, position ids)
        persistent = module.state_dict().keys()
        module.load_state_dict({**state, **{name: b[k] for name, b in buffers.items() if name in persistent}})
        module.eval()
        records[k].update(seconds=seconds, eval_seconds=eval_seconds / k_members,
                          batch_digest=digests[k].hexdigest(), train_flops_per_example=flops_per_example)
        records[k].setdefault("steps", step)
        if recipe.patience:
            records[k].setdefault("stopped_epoch", None)
    return records


def _batches(inputs: list, labels: list[torch.Tensor], device: torch.device):
    """idx (K, B) -> (inputs (K, B, ...), labels (K, B)) on the device: each member's batch from
    its own set. Members that share one set (the seeds of a variant) index it once; a set that
    is not a plain tensor (a poisoned set's patched rows) is indexed on the host, batch by batch."""
    shared = all(x is inputs[0] for x in inputs) and all(y is labels[0] for y in labels)
    if shared:
        x = inputs[0]
        if isinstance(x, torch.Tensor) and (device.type == "cpu" or _fits(x, device)):
            x = x.to(device)  # the whole set once, where it is a tensor that fits (as train_model does)
        y = labels[0].to(device)

        def gather(idx):
            flat = idx.flatten()
            on_device = isinstance(x, torch.Tensor) and x.device == device
            xb = x[flat.to(device) if on_device else flat].to(device, non_blocking=True)
            return xb.view(*idx.shape, *xb.shape[1:]), y[idx.to(device)]
        return gather

    def gather_each(idx):
        xb = torch.stack([inputs[k][idx[k]] for k in range(len(inputs))]).to(device, non_blocking=True)
        yb = torch.stack([labels[k][idx[k]] for k in range(len(labels))]).to(device)
        return xb, yb
    return gather_each


@torch.no_grad()
def _stacked_logits(batched, params, buffers, x: torch.Tensor, device: torch.device, batch: int = 1024) -> torch.Tensor:
    """(K, N, C) logits of every member on `x`, in float32 on the CPU."""
    outs = []
    for start in range(0, len(x), batch):
        xb = x[start:start + batch].to(device)
        outs.append(batched(params, buffers, xb.expand(next(iter(params.values())).shape[0], *xb.shape)).float().cpu())
    return torch.cat(outs, dim=1)


def _stacked_adamw(tensors: list[torch.Tensor], recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    kwargs = {"lr": recipe.learning_rate, "weight_decay": recipe.weight_decay}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(tensors, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(tensors, **kwargs)
