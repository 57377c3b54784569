"""Disparity metrics across classes and across the groups a user names.

fairlearn computes the group metrics people report, and `fairlearn_report` calls it for the
per-seed values the findings show: accuracy and selection rate per group (`MetricFrame`), the
demographic-parity and equalised-odds differences. What fairlearn does not do is written here,
and why:
- intervals over seeds and examples, the audit's rule for every number: each metric is recomputed
  on stratified example resamples (every class or group keeps its size), a fairlearn call per
  resample and seed would take minutes, so the resampled values come from the vectorised forms
  below, which the tests check against fairlearn on the same predictions;
- per-class accuracy, the worst class and the largest gap between classes over a (seeds x
  examples) outcome matrix, for accuracy and for robust accuracy alike;
- multiclass demographic parity and equalised odds: fairlearn defines them for binary
  predictions (the selection rate is the share predicted positive), so with K > 2 classes each
  class is taken one-vs-rest and the largest difference over the classes is reported.
Torch-free.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..verdicts.stats import share_floor
from . import replicate_store


def extreme_floor(shares: np.ndarray, sizes: np.ndarray, lowest: bool = True) -> float:
    """The least variance of the lowest (or highest) of several shares: the largest binomial floor
    among the strata that could be the extreme one (within two of their own standard errors of
    it). A small group that is always right is as likely the worst as the large group at 0.99."""
    floors = np.array([share_floor(p * n, n) for p, n in zip(shares, sizes)])
    extreme = shares.min() if lowest else shares.max()
    near = shares - 2 * np.sqrt(floors) <= extreme if lowest else shares + 2 * np.sqrt(floors) >= extreme
    return float(floors[near].max())


def stratified_resamples(strata: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) example indices drawn with replacement within each stratum, so that every
    class (or group) keeps its size in every resample."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(strata)), dtype=np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        out[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return out


def stratum_means(outcomes: np.ndarray, strata: np.ndarray, n_strata: int) -> np.ndarray:
    """(seeds, n_strata) mean outcome within each stratum; NaN where a stratum has no example."""
    outcomes = np.atleast_2d(np.asarray(outcomes, dtype=float))
    onehot = np.zeros((len(strata), n_strata))
    onehot[np.arange(len(strata)), strata] = 1.0
    counts = onehot.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, outcomes @ onehot / counts, np.nan)


def class_disparity(outcomes: np.ndarray, labels: np.ndarray, n_classes: int, n_boot: int, seed: int) -> dict:
    """Per-class mean of a (seeds x examples) 0/1 outcome (correct, robust) and, per seed and per
    resample, the worst class's value and the largest gap between classes (classes present only).
    Returns {"per_class": seeds x K, "worst": seeds, "gap": seeds, "worst_replicates": seeds x B,
    "gap_replicates": seeds x B, "present": the classes with examples}."""
    labels = np.asarray(labels)
    outcomes = np.atleast_2d(np.asarray(outcomes, dtype=float))
    out = replicate_store.replicates("fairness.class_disparity", {"outcomes": outcomes, "labels": labels},
                                     {"n_classes": n_classes, "n_boot": n_boot, "seed": seed},
                                     lambda: _class_disparity(outcomes, labels, n_classes, n_boot, seed))
    return {k: v.tolist() if k == "present" else float(v) if np.ndim(v) == 0 else v for k, v in out.items()}


def _class_disparity(outcomes: np.ndarray, labels: np.ndarray, n_classes: int, n_boot: int, seed: int) -> dict:
    per_class = stratum_means(outcomes, labels, n_classes)
    present = np.flatnonzero(~np.isnan(per_class[0]))
    resamples = stratified_resamples(labels, n_boot, seed)
    reps = np.stack([stratum_means(outcomes[:, idx], labels[idx], n_classes)[:, present] for idx in resamples],
                    axis=1)  # seeds x B x present
    chosen = per_class[:, present]
    sizes = np.bincount(labels, minlength=n_classes)[present]
    mean = chosen.mean(0)  # per present class, over seeds
    worst_floor = extreme_floor(mean, sizes)
    return {"per_class": per_class, "present": present,
            "worst": chosen.min(1), "gap": chosen.max(1) - chosen.min(1),
            "worst_replicates": reps.min(2), "gap_replicates": reps.max(2) - reps.min(2),
            # the least variance each can have: the binomial noise of the classes that may set it
            "worst_floor": np.array(worst_floor),
            "gap_floor": np.array(worst_floor + extreme_floor(mean, sizes, lowest=False))}


def _rates(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int) -> dict:
    """Per group (and per class, one-vs-rest): selection rate, true- and false-positive rate, and
    the counts each is a share of. A rate with no example to be a share of (a group without
    positives of a class) is 0, as fairlearn (through scikit-learn's confusion matrix) counts it."""
    onehot_g = np.zeros((len(groups), n_groups))
    onehot_g[np.arange(len(groups)), groups] = 1.0
    pred = (y_pred[:, None] == np.arange(n_classes)).astype(float)  # n x K
    true = (y_true[:, None] == np.arange(n_classes)).astype(float)
    size = onehot_g.sum(0)[:, None]  # G x 1
    positives, negatives = onehot_g.T @ true, onehot_g.T @ (1 - true)  # G x K
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"selection": onehot_g.T @ pred / size,
                "tpr": np.where(positives > 0, onehot_g.T @ (pred * true) / np.maximum(positives, 1), 0.0),
                "fpr": np.where(negatives > 0, onehot_g.T @ (pred * (1 - true)) / np.maximum(negatives, 1), 0.0),
                "accuracy": (onehot_g.T @ (y_true == y_pred).astype(float)) / size[:, 0],
                "size": np.broadcast_to(size, positives.shape), "positives": positives, "negatives": negatives}


def _widest(rates: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """(the largest max - min over groups of any column, the least variance of that difference:
    the binomial noise of the two groups that set it)."""
    spread = rates.max(0) - rates.min(0)
    c = int(np.argmax(spread))
    hi, lo = int(np.argmax(rates[:, c])), int(np.argmin(rates[:, c]))
    floor = sum(share_floor(rates[g, c] * counts[g, c], counts[g, c]) for g in (hi, lo))
    return float(spread[c]), floor


def group_metrics(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int) -> dict:
    """Worst-group accuracy, and the demographic-parity and equalised-odds differences (fairlearn's
    definitions; for K > 2 classes the largest over the classes taken one-vs-rest, for 2 classes
    class 1 is the positive one), from one model's predictions; with each one's least variance
    (`*_floor`: the binomial noise of the groups that set it)."""
    r = _rates(np.asarray(y_true), np.asarray(y_pred), np.asarray(groups), n_groups, n_classes)
    classes = [1] if n_classes == 2 else list(range(n_classes))
    dp, dp_floor = _widest(r["selection"][:, classes], r["size"][:, classes])
    tpr, tpr_floor = _widest(r["tpr"][:, classes], r["positives"][:, classes])
    fpr, fpr_floor = _widest(r["fpr"][:, classes], r["negatives"][:, classes])
    worst = int(np.argmin(r["accuracy"]))
    sizes = r["size"][:, 0]
    return {"worst_group_accuracy": float(r["accuracy"][worst]), "accuracy_by_group": r["accuracy"].tolist(),
            "demographic_parity_difference": dp, "equalized_odds_difference": max(tpr, fpr),
            "class_of_largest_parity_gap": int(classes[int(np.argmax(r["selection"][:, classes].max(0)
                                                                     - r["selection"][:, classes].min(0)))]),
            "worst_group_accuracy_floor": extreme_floor(r["accuracy"], sizes),
            "demographic_parity_difference_floor": dp_floor,
            "equalized_odds_difference_floor": tpr_floor if tpr >= fpr else fpr_floor}


def group_disparity(predictions: np.ndarray, y_true: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int,
                    n_boot: int, seed: int) -> dict:
    """`group_metrics` per seed of a (seeds x examples) prediction matrix, and per seed and
    group-stratified resample: {metric: seeds} and {metric + "_replicates": seeds x B}."""
    keys = ("worst_group_accuracy", "demographic_parity_difference", "equalized_odds_difference")
    predictions = np.atleast_2d(predictions)
    per_seed = [group_metrics(y_true, p, groups, n_groups, n_classes) for p in predictions]
    resamples = stratified_resamples(np.asarray(groups), n_boot, seed)
    reps = {k: np.empty((len(predictions), n_boot)) for k in keys}
    for b, idx in enumerate(resamples):
        for s, p in enumerate(predictions):
            m = group_metrics(y_true[idx], p[idx], groups[idx], n_groups, n_classes)
            for k in keys:
                reps[k][s, b] = m[k]
    out: dict[str, Any] = {k: np.array([m[k] for m in per_seed]) for k in keys}
    out.update({f"{k}_replicates": reps[k] for k in keys})
    out.update({f"{k}_floor": float(np.mean([m[f"{k}_floor"] for m in per_seed])) for k in keys})
    out["accuracy_by_group"] = np.array([m["accuracy_by_group"] for m in per_seed])
    return out


def fairlearn_report(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, n_classes: int) -> dict:
    """fairlearn's own figures for one model's predictions: accuracy, selection rate and size per
    group (MetricFrame), and the demographic-parity and equalised-odds differences (binary: as
    fairlearn defines them; K classes: the largest over the classes one-vs-rest)."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        selection_rate,
    )
    from sklearn.metrics import accuracy_score

    y_true, y_pred, sensitive = np.asarray(y_true), np.asarray(y_pred), np.asarray(sensitive)
    frame = MetricFrame(metrics={"accuracy": accuracy_score, "size": count}, y_true=y_true, y_pred=y_pred,
                        sensitive_features=sensitive)
    classes = [1] if n_classes == 2 else list(range(n_classes))
    dp, eo, rates = [], [], {}
    for c in classes:
        t, p = (y_true == c).astype(int), (y_pred == c).astype(int)
        dp.append(demographic_parity_difference(t, p, sensitive_features=sensitive))
        with warnings.catch_warnings():  # a group without positives of class c: fairlearn warns, the rate is 0
            warnings.simplefilter("ignore")
            eo.append(equalized_odds_difference(t, p, sensitive_features=sensitive))
        rates[c] = MetricFrame(metrics=selection_rate, y_true=t, y_pred=p, sensitive_features=sensitive).by_group
    worst = classes[int(np.argmax(dp))]
    by_group = frame.by_group
    return {"by_group": {str(g): {"accuracy": float(by_group.loc[g, "accuracy"]), "size": int(by_group.loc[g, "size"]),
                                  "selection_rate": float(rates[worst].loc[g])} for g in by_group.index},
            "selection_rate_of_class": worst,
            "demographic_parity_difference": float(max(dp)), "equalized_odds_difference": float(max(eo)),
            "worst_group_accuracy": float(by_group["accuracy"].min())}
