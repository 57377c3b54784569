"""The efficiency suite's checks: what SwiGLU buys. Accuracy at matched parameters and one
training recipe, the compute to reach a target (steps, counted FLOPs, seconds, read off the
learning curves recorded during the normal training), step time, inference latency and
throughput, and training memory.

Counts (FLOPs, steps, bytes, accuracy) may FAIL a comparison; wall-clock timings depend on what
else the machine runs (xdist workers share its cores), so their comparisons stop at WARN and are
marked indicative (they never fail a run, fail_on_warn included).
The measuring functions are in `methods.efficiency`."""

from __future__ import annotations

import dataclasses

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
    metric="training matmul FLOPs to the target validation accuracy (mean over seeds)",
    rmf=("MEASURE 2.3", "MEASURE 2.12", "MAP 3.1"), characteristic="valid_reliable", impact="low",
    explanation="The learning curve of every seed, recorded during the audit's normal training: "
                "validation accuracy and loss against steps, wall time and FLOPs. The FLOPs are what "
                "torch.utils.flop_counter counts on a training step: matrix multiplications, "
                "convolutions and attention only; element-wise work (the activation, the gate's "
                "product, norms, the optimiser) is not counted, so the claim tested is about matmul "
                "compute at matched parameters. The target is one validation accuracy for the whole "
                "family, so that every model is measured to the same point, and (by default) one that "
                "no model reaches within its first epoch.",
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
    EfficiencyMetric("flops_to_target", "training matmul FLOPs to the target validation accuracy", "FLOPs", False, False),
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
                     "of the baseline's mean, with a t-interval over seeds (seeds are not paired between "
                     "architectures)" + (" and repeats" if metric.timing else "") + "."
                     + (" A wall-clock timing: on a shared machine it is indicative, so it is never "
                        "more than a WARN and never fails a run." if metric.timing else
                        " A count: a shortfall beyond max_efficiency_loss shown by the whole interval is "
                        "a FAIL.")),
        mitigation="Weigh what the candidate gains here against what it costs in the robustness "
                   "suites (the trade-off plot of this report); set min_efficiency_gain to require a gain.",
        condition=NoWorseThanBaseline("max_efficiency_loss", higher_is_better=metric.higher_is_better),
    )


EFFICIENCY_COMPARISONS = {m.name: comparison_check(m) for m in EFFICIENCY_METRICS}
