"""The fairness suite's checks: who pays for each model's errors, by class (clean, under attack,
under corruptions) and by the groups a user names, and whether the SwiGLU candidate amplifies a
disparity against each baseline. The metrics are in `methods.fairness`.

Per model the disparities are reported against ceilings that only WARN: how unequal is too
unequal depends on the use, and the policy's defaults are a place to start. The comparisons are
the headline (does swapping in the candidate make it worse?) and may FAIL."""

from __future__ import annotations

from ..verdicts.conditions import Ceiling, NoWorseThanBaseline, Status, capped
from ..verdicts.risk import CheckInfo


def _missing_class_words(facts: dict, policy: dict) -> str | None:
    """A gap over the classes the measured inputs hold says nothing of the others. The measured
    inputs are class-stratified (`AuditData.evaluation_rows`), so a class is missing only where
    n_examples is below the number of classes."""
    missing = facts["missing_classes"]
    if not missing:
        return None
    return (f"inconclusive: the {facts['n_examples']} test inputs measured hold no input of class(es) "
            f"{missing}, so their gap is unmeasured; raise n_examples to at least the number of classes")


MISSING_CLASSES_CAP = capped("classes not measured", ("missing_classes", "n_examples"), Status.WARN,
                             _missing_class_words)


def _masked_words(facts: dict, policy: dict) -> str | None:
    """Robust accuracy of a model whose gradient-masking checks fail is an upper bound (the
    adversarial suite says so): a gap or a worst class read from it is no evidence either way."""
    masked = {name: failures for name, failures in facts["masked_models"].items() if failures}
    if not masked:
        return None
    which = "; ".join(f"'{name}' ({', '.join(failures)})" for name, failures in masked.items())
    return (f"inconclusive: the gradient-masking checks fail for {which}, so its robust accuracy is an upper bound "
            "and its per-class robust accuracies are not evidence")


ROBUST_MASKED_CAP = capped("masked model", ("masked_models",), Status.WARN, _masked_words)

_REBALANCE = ("Reweight or resample training data so that the worse-served classes or groups count more "
              "(group-balanced sampling, group DRO), collect more data for them, or post-process "
              "decision thresholds per group (fairlearn's ThresholdOptimizer); measure again after.")

CLASS_DISPARITY = CheckInfo(
    suite="fairness", check="class_disparity", title="Disparity across classes",
    metric="largest gap between the best and the worst class's mean outcome (accuracy; robust accuracy "
           "under the Linf worst case; accuracy under corruptions)",
    rmf=("MEASURE 2.11",), characteristic="fair", impact="moderate",
    explanation="Per class of the test split: the share of inputs the model gets right (clean, under the "
                "adversarial suite's Linf worst case, and averaged over the OOD suite's corruptions), the "
                "worst class and the gap between the best and the worst, with intervals over seeds and "
                "class-stratified resamples of the test inputs. An architecture swap can move errors "
                "onto some classes while average accuracy stays the same, and robustness is known to be "
                "much more unequal across classes than accuracy.",
    mitigation=_REBALANCE,
    condition=Ceiling("max_class_accuracy_gap", "gap between the best and the worst class",
                      by_aspect=(("robust", "max_robust_class_gap"), ("corrupted", "max_corrupted_class_gap"))),
    modifiers=(MISSING_CLASSES_CAP, ROBUST_MASKED_CAP),
)

GROUP_DISPARITY = CheckInfo(
    suite="fairness", check="group_disparity", title="Disparity across the groups the user named",
    metric="equalised-odds difference (the larger of the true- and false-positive-rate gaps between groups; "
           "K classes: the largest over the classes one-vs-rest)",
    rmf=("MEASURE 2.11",), characteristic="fair", impact="high",
    explanation="On the test inputs, per group the user named (a groups_test array, or a feature's values): "
                "accuracy, selection rate and size as fairlearn's MetricFrame gives them, the demographic-"
                "parity difference (gap in the share predicted as a class), the equalised-odds difference "
                "(gap in true- or false-positive rate) and the worst group's accuracy, with intervals over "
                "seeds and group-stratified resamples. fairlearn defines parity for binary predictions; with "
                "more classes each is taken one-vs-rest and the largest gap is reported. A group can be a "
                "sensitive attribute the model never sees.",
    mitigation=_REBALANCE,
    condition=Ceiling("max_equalized_odds_difference", "equalised-odds difference"),
)

WORST_CLASS_COMPARISON = CheckInfo(
    suite="fairness", check="worst_class_accuracy_vs_baseline",
    title="Worst-class accuracy, SwiGLU candidate vs baseline",
    metric="difference of the worst class's mean outcome (candidate - baseline): clean accuracy, or robust "
           "accuracy under the Linf worst case",
    rmf=("MEASURE 2.11",), characteristic="fair", impact="moderate",
    explanation="Does the candidate serve its worst class worse than the baseline serves its own? A "
                "non-inferiority test on the worst class's accuracy (and robust accuracy), with intervals "
                "over seeds and class-stratified resamples of the test inputs shared by the two models.",
    mitigation=_REBALANCE + " If the candidate alone amplifies the disparity, keep the baseline until it does not.",
    condition=NoWorseThanBaseline("max_worst_class_accuracy_gap"),
    modifiers=(MISSING_CLASSES_CAP, ROBUST_MASKED_CAP),
)

WORST_GROUP_COMPARISON = CheckInfo(
    suite="fairness", check="worst_group_accuracy_vs_baseline",
    title="Worst-group accuracy, SwiGLU candidate vs baseline",
    metric="difference of the worst group's accuracy (candidate - baseline)",
    rmf=("MEASURE 2.11",), characteristic="fair", impact="high",
    explanation="The amplification headline where the user named groups: is the candidate's worst-group "
                "accuracy lower than the baseline's by more than the tolerance? Intervals over seeds and "
                "group-stratified resamples of the test inputs shared by the two models.",
    mitigation=_REBALANCE + " If the candidate alone amplifies the disparity, keep the baseline until it does not.",
    condition=NoWorseThanBaseline("max_worst_group_accuracy_gap"),
)

PARITY_COMPARISON = CheckInfo(
    suite="fairness", check="group_parity_vs_baseline",
    title="Demographic-parity and equalised-odds differences, SwiGLU candidate vs baseline",
    metric="difference of the parity gap between groups (candidate - baseline; lower is better)",
    rmf=("MEASURE 2.11",), characteristic="fair", impact="moderate",
    explanation="Does the candidate widen the gap between the groups the user named, in the share of each "
                "group it predicts as a class (demographic parity) or in its error rates per group "
                "(equalised odds)? Intervals over seeds and group-stratified resamples.",
    mitigation=_REBALANCE,
    condition=NoWorseThanBaseline("max_parity_gap_increase", higher_is_better=False),
)
