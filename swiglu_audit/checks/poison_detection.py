"""The checks of finding poison: the published detectors scored on the harness's planted poison,
the candidate's detectability against each baseline, and the trigger-agnostic scan of the user's
own training set. The detectors are in `methods.poison_detectors`, the scan in
`methods.backdoor_scan`."""

from __future__ import annotations

from ..risk import CheckInfo, Floor, NoWorseThanBaseline

DETECTION = CheckInfo(
    suite="poisoning", check="poison_detection", title="Detection of backdoor-poisoned training samples",
    metric="detector AUROC (poisoned positive), best of spectral signatures and activation clustering",
    rmf=("MEASURE 2.7", "MEASURE 2.1"), characteristic="secure_resilient",
    attack_class="poisoning/backdoor", impact="moderate",
    explanation="The model backdoored at the policy's detection_rate reads its own poisoned "
                "training set; its penultimate activations are given to two detectors; their scores and flags are scored against the known set of "
                "poisoned samples (AUROC, precision, recall). A low AUROC means poison in this "
                "architecture's features is hard to find by these standard defences.",
    mitigation="Run the detectors on every training set before training, remove flagged samples "
               "and retrain; keep provenance records so that a flagged source can be traced.",
    condition=Floor("min_poison_detection_auroc", "best AUROC"),
)

DETECTION_COMPARISON = CheckInfo(
    suite="poisoning", check="poison_detectability_vs_baseline",
    title="Detectability of backdoor poison, SwiGLU candidate vs baseline",
    metric="spectral-signature AUROC difference (candidate - baseline)",
    rmf=("MEASURE 2.7", "MEASURE 2.1"), characteristic="secure_resilient",
    attack_class="poisoning/backdoor", impact="moderate",
    explanation="Whether poison is harder to find in the SwiGLU candidate's features than in a "
                "baseline's, on the same poisoned training set (a t-interval over seeds and samples, "
                "the samples' part from bootstrap resamples shared by both models).",
    mitigation="If the candidate hides poison better, do not rely on feature-space detectors alone.",
    condition=NoWorseThanBaseline("max_detection_auroc_drop"),
)

SCAN = CheckInfo(
    suite="poisoning", check="training_set_scan", title="Scan of the audited training set for poison",
    metric="share of training samples flagged by both detectors with every seed's model",
    rmf=("MEASURE 2.1", "MEASURE 2.7"), characteristic="secure_resilient",
    attack_class="poisoning/backdoor", impact="moderate",
    explanation="Is the audited training set already poisoned? The scan does not assume the trigger: "
                "it reverse-engineers the smallest trigger that sends other classes to each class "
                "(Neural Cleanse), and for a class whose trigger is anomalously small it lists the "
                "samples labelled with it that depend on that trigger. Its 'nothing found' is a PASS "
                "only when the same scan finds the harness's own planted backdoor in this "
                "architecture; otherwise it is inconclusive.",
    mitigation="Inspect the listed samples and their sources; remove confirmed poison and retrain. "
               "If the recovered trigger is visible in the report's picture, search the data for it.",
)
