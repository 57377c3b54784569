"""Fairness measurements per model, over all training seeds, memoised per process: who pays for
the errors, by class (accuracy, robust accuracy under the adversarial suite's Linf worst case,
accuracy under the OOD suite's corruptions) and by the groups a user names.

The outcomes are the other suites' own (the same test inputs, attacks and corruptions), so this
suite trains and attacks nothing of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..methods.attack_registry import threat_attacks
from ..methods.fairness import class_disparity, fairlearn_report, group_disparity
from ..training.planned import Work
from . import adversarial as adversarial_measure
from . import ood as ood_measure
from .predictions import predicted_classes

if TYPE_CHECKING:
    from ..session import AuditSession

# what each per-class outcome is, in words, and where it comes from
OUTCOMES = {
    "accuracy": "accuracy on the test split",
    "robust": "robust accuracy under the adversarial suite's Linf worst case",
    "corrupted": "accuracy under the OOD suite's corruptions (mean over corruptions and severities)",
}


def planned_work(audit: AuditSession, name: str) -> Work:
    """The suite's declared work on one model: its group metrics predict the whole test split once
    per seed (its class metrics reuse the other suites' outcomes)."""
    data = audit.data
    return Work(forward_examples=len(audit.zoo.trained_seeds(name)) * len(data.y_test) if data.groups_test is not None else 0)


def outcomes(audit: AuditSession, name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(seeds x examples outcome matrix, the examples' labels) for one kind of OUTCOMES."""
    data = audit.data
    if kind == "accuracy":
        return adversarial_measure.clean_correct(audit, name), data.y_test.numpy()
    if kind == "robust":
        result = adversarial_measure.adversarial(audit, name)
        linf = threat_attacks(audit.config.adversarial.attacks, "linf")
        robust = result["clean"].astype(bool)
        for attack in linf:
            robust = robust & result["per_attack"][attack].astype(bool)
        return robust, data.evaluation_subset("test", audit.config.adversarial.n_examples)[1].numpy()
    if kind == "corrupted":
        corrupted = ood_measure.mean_corrupted_correct(ood_measure.corruption(audit, name))
        return corrupted, data.evaluation_subset("test", audit.config.ood.n_examples)[1].numpy()
    raise ValueError(f"unknown outcome {kind!r}; known: {sorted(OUTCOMES)}")


def outcome_missing(audit: AuditSession, kind: str) -> str | None:
    """Why an outcome cannot be had in this audit's configuration, or None."""
    from ..methods.corruptions import applicable_corruptions

    if kind == "robust" and not threat_attacks(audit.config.adversarial.attacks, "linf"):
        return "no Linf attack is configured ([tool.swiglu_audit.adversarial] attacks): no Linf worst case per class"
    if kind == "corrupted" and not applicable_corruptions(audit.config.ood.corruptions, audit.data.modality)[0]:
        return (f"no configured corruption applies to {audit.data.modality} data ([tool.swiglu_audit.ood] "
                "corruptions): no accuracy under corruptions per class")
    return None


def by_class(audit: AuditSession, name: str, kind: str) -> dict:
    def compute():
        values, labels = outcomes(audit, name, kind)
        stats = audit.statistics
        return {**class_disparity(values, labels, audit.data.n_classes, stats.n_boot, stats.seed),
                "n_examples": len(labels), "class_sizes": np.bincount(labels, minlength=audit.data.n_classes).tolist()}
    return audit.memo(("fairness-class", name, kind), compute)


def groups_missing(audit: AuditSession) -> str | None:
    """Why the group metrics cannot run here, or None when the user named groups."""
    if audit.data.groups_test is None:
        return ("groups not given: per-class disparity only. Name groups with a groups_test array in the dataset "
                "factory's mapping (one group label per test input), or, for (N, D) data, a feature whose "
                "values are the groups with [tool.swiglu_audit.fairness] group_feature")
    return None


def by_group(audit: AuditSession, name: str) -> dict:
    def compute():
        data, stats = audit.data, audit.statistics
        codes, names = data.group_codes()
        y = data.y_test.numpy()
        predictions = predicted_classes(audit, audit.zoo.models(name), data.x_test)
        out = group_disparity(predictions, y, codes, len(names), data.n_classes, stats.n_boot, stats.seed)
        out["fairlearn"] = [fairlearn_report(y, p, np.asarray(names)[codes], data.n_classes) for p in predictions]
        out["groups"] = names
        out["group_sizes"] = np.bincount(codes, minlength=len(names)).tolist()
        return out
    return audit.memo(("fairness-group", name), compute)
