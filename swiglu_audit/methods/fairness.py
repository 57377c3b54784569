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

import numpy as np


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
    per_class = stratum_means(outcomes, labels, n_classes)
    present = np.flatnonzero(~np.isnan(per_class[0]))
    resamples = stratified_resamples(labels, n_boot, seed)
    outcomes = np.atleast_2d(np.asarray(outcomes, dtype=float))
    reps = np.stack([stratum_means(outcomes[:, idx], labels[idx], n_classes)[:, present] for idx in resamples],
                    axis=1)  # seeds x B x present
    chosen = per_class[:, present]
    return {"per_class": per_class, "present": present.tolist(),
            "worst": chosen.min(1), "gap": chosen.max(1) - chosen.min(1),
            "worst_replicates": reps.min(2), "gap_replicates": reps.max(2) - reps.min(2)}


def _rates(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int) -> dict:
    """Per group (and per class, one-vs-rest): selection rate, true- and false-positive rate."""
    onehot_g = np.zeros((len(groups), n_groups))
    onehot_g[np.arange(len(groups)), groups] = 1.0
    pred = (y_pred[:, None] == np.arange(n_classes)).astype(float)  # n x K
    true = (y_true[:, None] == np.arange(n_classes)).astype(float)
    size = onehot_g.sum(0)[:, None]  # G x 1
    positives, negatives = onehot_g.T @ true, onehot_g.T @ (1 - true)  # G x K
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"selection": onehot_g.T @ pred / size,
                "tpr": np.where(positives > 0, onehot_g.T @ (pred * true) / positives, np.nan),
                "fpr": np.where(negatives > 0, onehot_g.T @ (pred * (1 - true)) / negatives, np.nan),
                "accuracy": (onehot_g.T @ (y_true == y_pred).astype(float)) / size[:, 0]}


def _spread(values: np.ndarray) -> np.ndarray:
    """max - min over groups (axis 0), per class, ignoring groups where the rate is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class no group can measure: NaN, dropped below
        return np.nanmax(values, 0) - np.nanmin(values, 0)


def group_metrics(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int) -> dict:
    """Worst-group accuracy, and the demographic-parity and equalised-odds differences (fairlearn's
    definitions; for K > 2 classes the largest over the classes taken one-vs-rest, for 2 classes
    class 1 is the positive one), from one model's predictions."""
    r = _rates(np.asarray(y_true), np.asarray(y_pred), np.asarray(groups), n_groups, n_classes)
    classes = [1] if n_classes == 2 else list(range(n_classes))
    dp = _spread(r["selection"][:, classes])
    eo = np.fmax(_spread(r["tpr"][:, classes]), _spread(r["fpr"][:, classes]))
    return {"worst_group_accuracy": float(np.nanmin(r["accuracy"])), "accuracy_by_group": r["accuracy"].tolist(),
            "demographic_parity_difference": float(np.nanmax(dp)),
            "equalized_odds_difference": float(np.nanmax(eo)),
            "class_of_largest_parity_gap": int(classes[int(np.nanargmax(dp))])}


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
    out = {k: np.array([m[k] for m in per_seed]) for k in keys}
    out.update({f"{k}_replicates": reps[k] for k in keys})
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
