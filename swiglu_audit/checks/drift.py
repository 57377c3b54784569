"""The drift suite's checks: what the deployed model now sees (live inputs) against what it was
trained on, per dataset and per model, and whether the SwiGLU candidate degrades more under that
drift than a baseline. The tests are in `methods.drift`."""

from __future__ import annotations

from ..verdicts.risk import Ceiling, CheckInfo, Floor, NoWorseThanBaseline

_WATCH = ("Keep the live split current in the scheduled audit; when drift is flagged, label a sample "
          "of live inputs, measure accuracy on it, and retrain or recalibrate on data like it.")

INPUT_DRIFT = CheckInfo(
    suite="drift", check="input_drift", title="Input drift: live inputs against the training data",
    metric="two-sample test p-value, live vs training inputs: MMD (RBF kernel, permutations), and on (N, D) "
           "data the smallest per-feature KS p-value (Benjamini-Hochberg), Bonferroni-combined",
    rmf=("MEASURE 2.4", "MANAGE 4.1"), characteristic="valid_reliable", impact="moderate",
    explanation="A kernel two-sample test (maximum mean discrepancy, RBF kernel with the median "
                "bandwidth, permutation p-value) asks whether the live inputs come from the training "
                "inputs' distribution. On (N, D) data each feature also gets a Kolmogorov-Smirnov "
                "test with the Benjamini-Hochberg correction, and both tests decide, each at half of "
                "alpha (Bonferroni): the MMD's bandwidth follows the wide features and can miss a shift "
                "of one narrow feature that its KS test sees. A p-value below alpha (split over the "
                "suite's tests, Bonferroni) means the "
                "deployed model sees inputs unlike its training data, so the audit's other numbers "
                "may not describe its behaviour in production.",
    mitigation=_WATCH,
    # drift_alpha: the policy's alpha split over the suite's p-value tests (suite_drift.py); the
    # value is methods.drift.input_drift_p's, which splits it again between MMD and KS
    condition=Floor("drift_alpha", "input-drift p-value (MMD and per-feature KS, Bonferroni)"),
)


PREDICTION_DRIFT = CheckInfo(
    suite="drift", check="prediction_drift", title="Prediction drift: the predicted classes on live inputs",
    metric="chi-square test p-value, predicted-label counts on live vs test inputs (first seed)",
    rmf=("MEASURE 2.4", "MANAGE 4.1"), characteristic="valid_reliable", impact="moderate",
    explanation="Whether the model predicts the classes in other proportions on the live inputs than "
                "on the test split: label shift in production, or drift that moves its decisions.",
    mitigation=_WATCH,
    condition=Floor("drift_alpha", "chi-square p-value"),
)

LIVE_ACCURACY = CheckInfo(
    suite="drift", check="live_accuracy", title="Accuracy on live inputs (measured, or estimated without labels)",
    metric="test minus live accuracy (measured where live labels are given, else ATC's estimates of both)",
    rmf=("MEASURE 2.4", "MEASURE 2.3", "MANAGE 4.1"), characteristic="valid_reliable", impact="high",
    explanation="Without labels, the live accuracy is estimated by average thresholded confidence "
                "(ATC, Garg et al. 2022): the share of live inputs whose confidence exceeds the "
                "threshold at which the validation set's share above it equals its accuracy. Where "
                "live labels are given, the measured accuracy is judged and the estimate shown beside it. "
                "The interval covers seeds and the validation and live inputs; ATC itself can be biased "
                "under strong shifts (BENCHMARKS.md measures how often its interval holds the truth).",
    mitigation=_WATCH,
    condition=Ceiling("max_live_accuracy_drop", "accuracy drop on live inputs"),
)

DRIFT_DEGRADATION_COMPARISON = CheckInfo(
    suite="drift", check="drift_degradation_vs_baseline",
    title="Degradation on live inputs, SwiGLU candidate vs baseline",
    metric="difference of (live - test) accuracy, candidate - baseline (measured, or ATC estimates)",
    rmf=("MEASURE 2.4", "MANAGE 4.1"), characteristic="valid_reliable", impact="moderate",
    explanation="The seed's question for deployed models: does the SwiGLU model lose more accuracy "
                "under the drift its users actually see than the baseline does, on the same live inputs?",
    mitigation="If the candidate degrades more, keep the baseline in production or retrain the "
               "candidate on data like the live inputs before switching.",
    condition=NoWorseThanBaseline("max_drift_degradation_gap"),
)
