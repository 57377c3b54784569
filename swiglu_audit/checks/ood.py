"""The OOD and distribution-shift checks: what each finding means and how it is judged.

Convention: in-distribution is the positive class and a higher score means "more
in-distribution"; see `methods.ood_metrics` for the metric definitions."""

from __future__ import annotations

from ..verdicts.risk import Ceiling, CheckInfo, Floor, NoWorseThanBaseline

POSITIVE_CLASS = ("in-distribution inputs are the positive class; every detector's score is higher "
                  "for inputs it believes in-distribution; AUPR-OUT ranks by the negated score with "
                  "OOD positive; FPR@95TPR is the share of OOD inputs accepted at the largest "
                  "threshold that accepts at least 95% of in-distribution inputs")

_OOD_MITIGATION = ("Put an OOD monitor in front of the model in production (the best detector "
                   "here, with a threshold set on validation data), let the system abstain below "
                   "it, and train with outlier exposure or augmentation.")

OOD_DETECTION = CheckInfo(
    suite="ood", check="ood_detection", title="OOD detection (the best registered detector)",
    metric="AUROC of the detector chosen on validation data, mean over the level's OOD sets",
    rmf=("MEASURE 2.5", "MEASURE 2.6"), characteristic="safe", impact="moderate",
    explanation="How well the model can tell test inputs from out-of-distribution inputs, near "
                "(transformed versions of the data) or far (noise, natural-image patches). Every "
                "registered detector is scored (the details give each one's AUROC); the one "
                "judged is chosen on the validation split and a separate OOD draw, so the choice "
                "does not flatter the test numbers. 0.5 is chance.",
    mitigation=_OOD_MITIGATION,
    condition=Floor("warn_below_ood_auroc", "AUROC", by_aspect=(("near", "warn_below_near_ood_auroc"),)),
)

OOD_COMPARISON = CheckInfo(
    suite="ood", check="ood_auroc_vs_baseline", title="OOD AUROC (MSP), SwiGLU candidate vs baseline",
    metric="MSP AUROC difference on the level's pooled OOD sets (candidate - baseline)",
    rmf=("MEASURE 2.5", "MEASURE 2.6"), characteristic="safe", impact="moderate",
    explanation="Whether the SwiGLU candidate's own confidence separates in-distribution from OOD "
                "inputs worse than a baseline's, with the same detector (MSP) for both and the "
                "same inputs (a t-interval over seeds and inputs, the inputs' part from bootstrap "
                "resamples shared by both models).",
    mitigation="If the candidate is worse, rely on a dedicated OOD detector rather than its "
               "softmax confidence.",
    condition=NoWorseThanBaseline("max_ood_auroc_drop"),
)

SELECTIVE = CheckInfo(
    suite="ood", check="selective_prediction", title="Selective prediction: how well the model can abstain",
    metric="area under the risk-coverage curve (AURC, lower is better)",
    rmf=("MEASURE 2.6", "MEASURE 2.5"), characteristic="safe", impact="moderate",
    explanation="If the model abstains on its least confident test inputs first, how many errors "
                "remain among those it accepts, at every coverage; the area under that curve is 0 "
                "for a perfect ranking of errors last. The confidence score is the detector with "
                "the lowest AURC on the validation split.",
    mitigation="Set an abstention threshold from the risk-coverage curve at the error rate the "
               "application tolerates, and route abstentions to a person.",
    condition=Ceiling("max_aurc", "AURC"),
)

CORRUPTION = CheckInfo(
    suite="ood", check="corruption_robustness", title="Accuracy under common corruptions",
    metric="clean accuracy minus accuracy averaged over the applicable corruptions x 5 severities",
    rmf=("MEASURE 2.5",), characteristic="valid_reliable", impact="moderate",
    explanation="Test inputs are degraded at five severities by each configured corruption that "
                "applies to the data (images: noise, blur, contrast, geometry and the like; (N, D) "
                "feature vectors: noise scaled per feature, missing features imputed with the "
                "training mean, a scaling drift). The finding is the accuracy lost (clean minus the "
                "mean under corruptions), with its interval; the details give each corruption's accuracy by "
                "severity and the corruption error relative to the ReLU baseline (mCE, as in "
                "Hendrycks and Dietterich: errors summed over severities, divided by the "
                "baseline's, averaged over corruptions; below 1 is better than ReLU).",
    mitigation="Train with augmentations that match the expected deployment conditions, monitor "
               "input statistics in production, and abstain when they drift.",
    condition=Ceiling("max_corruption_accuracy_drop", "accuracy drop"),
)

CALIBRATION = CheckInfo(
    suite="ood", check="calibration_under_shift", title="Calibration under shift",
    metric="expected calibration error averaged over corruptions and severities",
    rmf=("MEASURE 2.5", "MEASURE 2.6"), characteristic="valid_reliable", impact="moderate",
    explanation="Whether the model's confidence still matches its accuracy when inputs are "
                "corrupted (15 equal-width bins of the maximum softmax probability). An "
                "overconfident model gives no warning that it is failing.",
    mitigation="Recalibrate (temperature scaling on validation data) and check calibration on "
               "shifted data before trusting confidence-based abstention.",
    condition=Ceiling("max_ece_under_shift", "ECE"),
)

SUBPOPULATION = CheckInfo(
    suite="ood", check="subpopulation_shift", title="Subpopulation shift (tabular data)",
    metric="accuracy on a held-out subpopulation: the model trained without it minus the model trained with it",
    rmf=("MEASURE 2.5",), characteristic="valid_reliable", impact="moderate",
    explanation="For (N, D) data: the model is retrained without the training samples in the top "
                "fifth of one feature's range (the feature with the largest variance), and its "
                "accuracy on the test samples in that range is compared with the model trained on "
                "everything, paired on the same inputs and seeds. A large drop means the model "
                "does not extrapolate to a subpopulation it has not seen.",
    mitigation="Collect data that covers the deployment population, monitor the feature's range "
               "in production, and abstain outside the training range.",
    condition=Ceiling("max_subpopulation_accuracy_drop", "accuracy drop"),
)

CORRUPTION_COMPARISON = CheckInfo(
    suite="ood", check="corruption_accuracy_vs_baseline",
    title="Accuracy under corruptions, SwiGLU candidate vs baseline",
    metric="difference of mean corrupted accuracy (candidate - baseline)",
    rmf=("MEASURE 2.5",), characteristic="valid_reliable", impact="moderate",
    explanation="Whether the SwiGLU candidate degrades more under common corruptions than a "
                "baseline, per test input averaged over all corruptions and severities, compared "
                "paired across seeds and inputs.",
    mitigation="If the candidate degrades more, augment its training data before adopting it.",
    condition=NoWorseThanBaseline("max_corruption_accuracy_gap"),
)
