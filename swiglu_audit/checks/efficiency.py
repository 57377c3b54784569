"""Efficiency claim: what SwiGLU buys. Accuracy at matched parameters and one training recipe, the
compute to reach a target (steps, counted FLOPs, seconds, read off the learning curves recorded
during the normal training), step time, inference latency and throughput, and training memory.

Methods here are plain functions of a model and tensors; the suite measures with them and the
conditions below judge. Counts (FLOPs, steps, bytes) are exact and may FAIL a comparison;
wall-clock timings depend on what else the machine runs (xdist workers share its cores), so
their comparisons stop at WARN.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import counting_saved_storages
from ..nn import eval_mode
from ..risk import CheckInfo, NoWorseThanBaseline

CLEAN_ACCURACY_COMPARISON = CheckInfo(
    suite="efficiency", check="clean_accuracy_vs_baseline",
    title="Clean accuracy at matched parameters and budget, SwiGLU candidate vs baseline",
    metric="clean accuracy difference", rmf=("MAP 3.1", "MEASURE 2.3"),
    characteristic="valid_reliable", impact="low",
    explanation="SwiGLU is adopted because it is claimed to reach better quality for the same "
                "parameters and compute. Both models here have (nearly) the same parameter count "
                "and the same training steps; the finding is the clean test accuracy difference.",
    mitigation="If the claim does not hold on your data, the switch buys no benefit to weigh "
               "against any robustness cost: keep the baseline.",
    condition=NoWorseThanBaseline("max_clean_accuracy_drop"),
)

TRAINING_EFFICIENCY = CheckInfo(
    suite="efficiency", check="training_efficiency",
    title="Compute to reach the target validation accuracy",
    metric="training FLOPs to the target validation accuracy (mean over seeds)",
    rmf=("MEASURE 2.3", "MEASURE 2.12", "MAP 3.1"), characteristic="valid_reliable", impact="low",
    explanation="The learning curve of every seed, recorded during the audit's normal training: "
                "validation accuracy and loss against steps, wall time and FLOPs (counted with "
                "torch.utils.flop_counter on a training step). The target is one validation accuracy "
                "for the whole family, so that every model is measured to the same point.",
    mitigation="A model that does not reach the target within the recipe's budget needs a longer "
               "or retuned recipe before its efficiency can be compared.",
)


@dataclasses.dataclass(frozen=True)
class EfficiencyMetric:
    """One per-seed (or per-repeat) efficiency quantity that the suite compares, candidate vs baseline."""

    name: str  # the check is `<name>_vs_baseline`
    what: str  # words for the reason text
    unit: str
    higher_is_better: bool
    timing: bool  # wall-clock: capped at WARN (the machine's load is not the model's doing)


EFFICIENCY_METRICS = (
    EfficiencyMetric("flops_to_target", "training FLOPs to the target validation accuracy", "FLOPs", False, False),
    EfficiencyMetric("steps_to_target", "training steps to the target validation accuracy", "steps", False, False),
    EfficiencyMetric("seconds_to_target", "training seconds to the target validation accuracy", "s", False, True),
    EfficiencyMetric("final_val_accuracy", "validation accuracy at the end of training", "accuracy", True, False),
    EfficiencyMetric("step_time", "seconds per training step", "s", False, True),
    EfficiencyMetric("latency", "inference latency at batch 1", "s", False, True),
    EfficiencyMetric("throughput", "inference throughput at a large batch", "examples/s", True, True),
    EfficiencyMetric("training_memory", "training memory (parameters, gradients, AdamW state, saved activations)",
                     "bytes", False, False),
)


def comparison_check(metric: EfficiencyMetric) -> CheckInfo:
    return CheckInfo(
        suite="efficiency", check=f"{metric.name}_vs_baseline",
        title=f"{metric.what[0].upper()}{metric.what[1:]}, SwiGLU candidate vs baseline",
        metric=f"relative difference, (candidate - baseline) / baseline mean, of the {metric.what}",
        rmf=("MEASURE 2.3", "MEASURE 2.12", "MAP 3.1"), characteristic="valid_reliable", impact="low",
        explanation=(f"The {metric.what} ({metric.unit}) of the candidate against the baseline, as a share "
                     "of the baseline's mean, paired by seed, with a bootstrap interval over seeds"
                     + (" and repeats" if metric.timing else "") + "."
                     + (" A wall-clock timing: on a shared machine it is indicative, so it is never "
                        "more than a WARN." if metric.timing else
                        " A shortfall is a WARN: it informs the decision to adopt the candidate, and "
                        "breaches the policy only where min_efficiency_gain requires a gain (FLOPs to target).")),
        mitigation="Weigh what the candidate gains here against what it costs in the robustness "
                   "suites (the trade-off plot of this report); set min_efficiency_gain to require a gain.",
        condition=NoWorseThanBaseline("max_efficiency_loss", higher_is_better=metric.higher_is_better),
    )


EFFICIENCY_COMPARISONS = {m.name: comparison_check(m) for m in EFFICIENCY_METRICS}


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


def forward_flops_per_example(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return count_flops(lambda: model(x)) / len(x)


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
