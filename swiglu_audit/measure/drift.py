"""Drift measurements on the live split, memoised per process: the input two-sample tests (once
per audit) and, per model, its confidences and predictions on the validation, test and live
inputs, from which the checks read prediction drift and the live accuracy (measured or estimated)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..methods.drift import atc_replicates, confidence_scores, feature_drift, mmd_permutation_test
from ..training.train import predict_logits
from ..verdicts.stats import share_floor

if TYPE_CHECKING:
    from ..session import AuditSession

MMD_PERMUTATIONS = 500  # the smallest permutation p-value is 1/501, well under any sensible alpha
MMD_SAMPLES = 400  # inputs of each side the kernel test reads: a 800 x 800 kernel, under a second


def live_missing(audit: AuditSession) -> str | None:
    """Why the drift suite cannot run here, or None when there is live data."""
    if audit.data.x_live is not None:
        return None
    return ("no live data: give the production inputs the deployed model now sees as x_live (optionally "
            "y_live) in the dataset factory's mapping, or `live = \"live.npz\"` in [tool.swiglu_audit] "
            "(or --swiglu-audit-live=PATH)")


def input_drift(audit: AuditSession) -> dict:
    """The MMD test of live inputs against training inputs; per-feature tests on (N, D) data."""
    def compute():
        data, stats = audit.data, audit.statistics
        out = {"mmd": mmd_permutation_test(data.x_train.numpy(), data.x_live.numpy(), MMD_PERMUTATIONS,
                                           MMD_SAMPLES, stats.seed)}
        if data.modality == "tabular":
            out["features"] = feature_drift(data.x_train.numpy(), data.x_live.numpy(), stats.alpha)
        return out
    return audit.memo(("input-drift",), compute)


def outputs(audit: AuditSession, name: str) -> dict:
    """Per seed: confidence (ATC's score) and correctness on val and test, confidence and
    prediction on live (and correctness where live labels are given)."""
    def compute():
        data = audit.data
        out: dict = {"val_score": [], "val_correct": [], "test_score": [], "test_correct": [],
                     "test_pred": [], "live_score": [], "live_pred": [], "live_correct": []}
        for m in audit.zoo.models(name):
            for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test),
                                ("live", data.x_live, data.y_live)):
                logits = predict_logits(m.module, x, audit.device)
                pred = logits.argmax(1)
                out[f"{split}_score"].append(confidence_scores(logits.numpy()))
                if split != "val":
                    out[f"{split}_pred"].append(pred.numpy())
                if y is not None:
                    out[f"{split}_correct"].append((pred == y).numpy())
        return {k: np.stack(v) for k, v in out.items() if v}
    return audit.memo(("drift-outputs", name), compute)


def accuracy_change(audit: AuditSession, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Live minus test accuracy per seed, with example-resampled replicates (seeds x B) whose
    resamples every model shares: measured where live labels are given, else ATC's estimates of
    both (the estimate on the test split stands in for the test accuracy, so that its bias
    cancels). Also returns the per-seed parts for the report."""
    return audit.memo(("drift-change", name), lambda: _accuracy_change(audit, name))


def _accuracy_change(audit: AuditSession, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    o, stats = outputs(audit, name), audit.statistics
    (live_atc, live_atc_reps), (test_atc, test_atc_reps) = atc_replicates(
        o["val_score"], o["val_correct"], [o["live_score"], o["test_score"]], stats.n_boot, stats.seed)
    parts = {"live_estimate": live_atc.tolist(), "test_estimate": test_atc.tolist(),
             "test_accuracy": o["test_correct"].mean(1).tolist()}
    if "live_correct" in o:
        rng = np.random.default_rng(stats.seed + 2)
        live_idx = rng.integers(0, o["live_correct"].shape[1], (stats.n_boot, o["live_correct"].shape[1]))
        test_idx = rng.integers(0, o["test_correct"].shape[1], (stats.n_boot, o["test_correct"].shape[1]))
        live = o["live_correct"].mean(1)
        reps = np.stack([lc[live_idx].mean(1) - tc[test_idx].mean(1) for lc, tc in zip(o["live_correct"], o["test_correct"])])
        parts["live_accuracy"] = live.tolist()
        return live - o["test_correct"].mean(1), reps, {**parts, "measured": True}
    return live_atc - test_atc, live_atc_reps - test_atc_reps, {**parts, "measured": False}


def change_floor(parts: dict, n_live: int, n_test: int) -> float:
    """The least example variance of one model's live - test accuracy (`replicate_estimate`'s
    floor): an Agresti-Coull share's on each side (`share_floor`, measured or ATC's estimate), so
    that every live and test input right is not read as an exact change of 0."""
    live = parts["live_accuracy"] if parts["measured"] else parts["live_estimate"]
    test = parts["test_accuracy"] if parts["measured"] else parts["test_estimate"]
    return (share_floor(float(np.mean(live)) * n_live, n_live)
            + share_floor(float(np.mean(test)) * n_test, n_test))


def comparison_floor(n_live: int, n_test: int) -> float:
    """The least example variance of candidate - baseline of the change (`replicate_comparison`'s
    floor): one discordant pseudo-input on each split, as `paired_comparison`'s for 0/1 outcomes,
    so that two models right everywhere are not read as exactly equal."""
    return 1.0 / n_live ** 2 + 1.0 / n_test ** 2


def prefetch(audit: AuditSession, name: str) -> None:
    """The xdist prefetch: a model's outputs on the three splits (nothing when there is no live data)."""
    if live_missing(audit) is None:
        outputs(audit, name)
