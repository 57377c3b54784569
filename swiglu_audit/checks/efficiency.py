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

from ..verdicts.conditions import DecisionTable, NoWorseThanBaseline, Rule, Status, always, capped, floored, judge_interval, rejudged
from ..verdicts.risk import CheckInfo


def _mismatch_words(facts: dict, policy: dict) -> str | None:
    if facts["parameter_mismatch"] <= policy["max_param_mismatch"]:
        return None
    counts = facts["n_parameters"]
    return (f"but parameter counts differ by {facts['parameter_mismatch']:.1%} ({counts[0]} vs {counts[1]}), more than "
            f"max_param_mismatch = {policy['max_param_mismatch']}, so this is not a matched comparison")


UNMATCHED_PARAMETERS_CAP = capped("unmatched parameter counts", ("parameter_mismatch", "n_parameters"), Status.WARN,
                                  _mismatch_words)

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
    modifiers=(UNMATCHED_PARAMETERS_CAP,),
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
    condition=DecisionTable(
        threshold=lambda facts, policy: f"every seed reaches the target validation accuracy ({facts['target_rule']})",
        rules=(
            Rule(Status.WARN, lambda facts, policy: bool(facts["missed"]), lambda facts, policy: (
                f"'{facts['model']}' did not reach the target validation accuracy {facts['target']:.3f} with seed(s) "
                f"{facts['missed']} within the recipe's budget; its compute to target is a lower bound")),
            Rule(Status.PASS, always, lambda facts, policy: (
                f"'{facts['model']}' reached the target validation accuracy {facts['target']:.3f} with every seed, "
                f"after {facts['flops']:.3g} training FLOPs on average ({facts['steps']:.0f} steps, "
                f"{facts['seconds']:.2f} s); final validation accuracy {facts['final_val_accuracy']:.3f}")))),
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


WALL_CLOCK_FLOOR = floored("wall-clock timing", (), Status.WARN, lambda facts, policy: (
    "a wall-clock timing on a machine the audit shares with its own workers is indicative, never a FAIL"))


def _required_gain(status: Status, value, ci, facts: dict, policy: dict):
    """With min_efficiency_gain set, the candidate must need at least that share fewer FLOPs to
    the target, by the audit's one rule (judge_interval, the relative difference at most -gain):
    PASS when the whole interval shows it, FAIL when the whole interval falls short, WARN
    (inconclusive) in between, and never PASS on one seed."""
    gain = policy["min_efficiency_gain"]
    if gain <= 0:
        return None
    low, high = ci
    verdict = judge_interval(value, ci, -gain, False, Status.FAIL)
    if verdict is Status.PASS and facts["n_seeds"] < 2:
        return Status.WARN, (f"inconclusive against min_efficiency_gain = {gain}: one seed per architecture cannot "
                             "show a gain of the architecture")
    if verdict is Status.PASS:
        return Status.PASS, f"the required gain min_efficiency_gain = {gain} is shown (interval's upper end {high:+.3f})"
    if verdict is Status.FAIL:
        return Status.FAIL, (f"the required gain min_efficiency_gain = {gain} is not met: even the interval's lower "
                             f"end {low:+.3f} saves less")
    return Status.WARN, (f"inconclusive against min_efficiency_gain = {gain}: the interval [{low:+.3f}, {high:+.3f}] "
                         "holds both a sufficient and an insufficient gain")


REQUIRED_GAIN = rejudged("required gain (min_efficiency_gain)", ("n_seeds",), _required_gain)


def _censored_words(facts: dict, policy: dict) -> str | None:
    """A candidate seed that never reached the target has only a lower bound (its whole budget):
    its true cost may be higher, so a PASS would rest on a number known to flatter it. (A
    baseline's lower bound only understates the candidate's advantage.)"""
    if not facts["candidate_missed"]:
        return None
    return (f"inconclusive: '{facts['candidate']}' did not reach the target with seed(s) {facts['candidate_missed']}, "
            "so its value is a lower bound")


CENSORED_CAP = capped("candidate missed the target", ("candidate", "candidate_missed"), Status.WARN, _censored_words)


def _first_point_words(facts: dict, policy: dict) -> str | None:
    """A baseline seed whose first curve point (step 1) already reaches the target leaves the
    step at which it did unmeasured (0 or 1 steps of training): the candidate's cost relative to
    it has no upper end, so no PASS. (A candidate seed there only lowers the interval's low end,
    which the comparison takes from step 0.)"""
    if not facts["at_first_point"]:
        return None
    which = "; ".join(f"'{name}' with seed(s) {seeds}" for name, seeds in facts["at_first_point"].items())
    return (f"inconclusive: the target is reached at the learning curve's first point by {which}, so the curve does "
            "not show when; set efficiency_target_accuracy higher, or leave it at 0 for the automatic target")


FIRST_POINT_CAP = capped("target reached at the first curve point", ("at_first_point",), Status.WARN,
                         _first_point_words)


def _metric_modifiers(metric: EfficiencyMetric) -> tuple:
    return ((WALL_CLOCK_FLOOR,) if metric.timing else ()) + (
        (REQUIRED_GAIN,) if metric.name == "flops_to_target" else ()) + (
        (CENSORED_CAP, FIRST_POINT_CAP) if metric.name.endswith("_to_target") else ())


def comparison_check(metric: EfficiencyMetric) -> CheckInfo:
    return CheckInfo(
        suite="efficiency", check=f"{metric.name}_vs_baseline",
        title=f"{metric.what[0].upper()}{metric.what[1:]}, SwiGLU candidate vs baseline",
        metric=f"relative difference, (candidate - baseline) / baseline mean, of the {metric.what}",
        rmf=("MEASURE 2.3", "MEASURE 2.12", "MAP 3.1"), characteristic="valid_reliable", impact="low",
        explanation=(f"The {metric.what} ({metric.unit}) of the candidate against the baseline, as a share "
                     "of the baseline's mean, with a t-interval over seeds (seeds are not paired between "
                     "architectures)" + (" and repeats" if metric.timing else "") + "."
                     + (" Each seed's crossing of the target is known only to lie between two points of "
                        "its learning curve, so the interval covers every value it could take there."
                        if metric.name.endswith("_to_target") else "")
                     + (" A wall-clock timing: on a shared machine it is indicative, so it is never "
                        "more than a WARN and never fails a run." if metric.timing else
                        " A count: a shortfall beyond max_efficiency_loss shown by the whole interval is "
                        "a FAIL.")),
        mitigation="Weigh what the candidate gains here against what it costs in the robustness "
                   "suites (the trade-off plot of this report); set min_efficiency_gain to require a gain.",
        condition=NoWorseThanBaseline("max_efficiency_loss", higher_is_better=metric.higher_is_better),
        modifiers=_metric_modifiers(metric),
    )


EFFICIENCY_COMPARISONS = {m.name: comparison_check(m) for m in EFFICIENCY_METRICS}
