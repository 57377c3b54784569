"""Efficiency measurements: plain functions of a model and tensors. FLOPs counted by
torch.utils.flop_counter, the first step at which a curve reaches a target, a timer, paired
inference timings and the memory a training step holds. The checks that judge them are in
`checks.efficiency`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..training.batching import counting_saved_storages
from ..training.nn import eval_mode


def parameter_mismatch(n_candidate: int, n_baseline: int) -> float:
    """Relative difference of parameter counts, against the larger."""
    return abs(n_candidate - n_baseline) / max(n_candidate, n_baseline)


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs that `fn` dispatches (matmuls, convolutions, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def first_reaching(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """The x at which the curve (xs increasing, ys measured there) first reaches `target`,
    interpolated linearly between the two measured points around the crossing; the first x when
    the first point already reaches it; None when no point does."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= target:
            if i == 0:
                return float(x)
            x0, y0 = xs[i - 1], ys[i - 1]
            return float(x0 + (x - x0) * (target - y0) / (y - y0)) if y > y0 else float(x)
    return None


def reaching_bracket(xs: Sequence[float], ys: Sequence[float], target: float) -> tuple[float, float, bool] | None:
    """(low, high, at the first point) of where the curve's first measured crossing of `target`
    lies: between the last measured x below it and the first at or above it, which is all the
    measured points tell (the interpolation of `first_reaching` assumes the curve is straight in
    between; a noisy curve may also have touched the target between earlier points and dipped
    below it again, which no measurement shows). When the first point already reaches it, its x
    with the flag set: the curve does not show when the target was reached before it. None when
    no point does."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= target:
            return (float(x), float(x), True) if i == 0 else (float(xs[i - 1]), float(x), False)
    return None


class Timer:
    """Seconds of a block of device work: CUDA events on a GPU (the host returns before the kernels
    finish, so a host clock alone would time the launches), the host's monotonic clock elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000
        else:
            self.seconds = time.perf_counter() - self._t0
        return False


def paired_inference_timings(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, device: torch.device,
                             repeats: int = 7) -> dict:
    """Latency at batch 1 (seconds) and throughput at a batch of all of `x` (examples per second)
    of two models, measured in turns (A B B A ...), so that a change in the machine's load falls
    on both alike: {"latency": (a's repeats, b's), "throughput": (a's, b's), "batch": n}."""
    single, batch = x[:1].to(device), x.to(device)
    out: dict = {"latency": ([], []), "throughput": ([], []), "batch": len(batch)}
    with eval_mode(model_a), eval_mode(model_b), torch.no_grad():
        for model in (model_a, model_b):  # warm-up: first calls allocate and pick kernels
            for _ in range(2):
                model(single), model(batch)
        for r in range(repeats):
            order = ((0, model_a), (1, model_b)) if r % 2 == 0 else ((1, model_b), (0, model_a))
            for which, model in order:
                with Timer(device) as t:
                    model(single)
                out["latency"][which].append(t.seconds)
                with Timer(device) as t:
                    model(batch)
                out["throughput"][which].append(len(batch) / t.seconds)
    return out


def training_memory_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Bytes a training step holds at its peak, counted rather than sampled so that it is the same
    on every machine: parameters, their gradients and AdamW's two moments (4 x parameter bytes),
    plus the activations the forward pass saves for the backward pass (each storage once)."""
    model = copy.deepcopy(model)  # a training step changes batch-norm statistics and gradients: not the user's model's
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model.train()
    cuda = x.device.type == "cuda"
    if cuda:  # where the device can say, its allocator's own peak for the same step as well
        torch.cuda.synchronize(x.device)
        before = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
    with counting_saved_storages(model) as seen:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    device_peak = torch.cuda.max_memory_allocated(x.device) - before if cuda else None
    activations = sum(seen.values())
    return {"total": 4 * param_bytes + activations, "parameters": param_bytes, "activations": activations,
            "batch": len(x), "device_peak_step_bytes": device_peak}
