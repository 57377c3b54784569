"""Each suite declared once: its title, the note a reviewer reads before its numbers, the
coverage rows it provides evidence for (MEASURE 1.1), its curve plots, and the measurement it
prefetches under pytest-xdist. The HTML report, the coverage matrix and the prefetch read this.

Adding a suite: write `suites/suite_<name>.py` (its pytest items) and `swiglu_audit/measure/
<name>.py` (its measurements), then add one `SuiteInfo` below. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoverageRow:
    area: str  # what is measured, in words
    check: str | None  # a finding whose check starts with this shows the area was measured
    rmf: tuple[str, ...]
    modalities: tuple[str, ...] = ("image", "tabular")  # the data it applies to
    needs: str | None = None  # user input without which it cannot be measured (live data, say)


@dataclass(frozen=True)
class CurvePlot:
    """A line plot drawn from the findings' details: one series per model."""

    check: str
    key: str  # the details key holding the points
    x_field: str | None  # the x field of each point; None when the points are [x, y] pairs
    heading: str
    x_label: str
    y_label: str
    diagonal: bool = False  # draw the chance diagonal (ROC curves)
    level: str | None = None  # only findings whose details' "level" is this (one plot per level)


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    title: str
    note: str = ""
    coverage: tuple[CoverageRow, ...] = ()
    curves: tuple[CurvePlot, ...] = ()
    # "module:function" in swiglu_audit.measure: the suite's expensive work on one model, run first
    # (the xdist prefetch) and the suite's job in the audit's job graph (swiglu_audit.jobs)
    prefetch: str | None = None
    in_memory: bool = False  # its prefetch keeps its results in memory only: no job (it would be computed and dropped)
    after: tuple[str, ...] = ()  # suites whose job on the same model its job waits for (it reads their results)
    # "module:function" in swiglu_audit.measure, what the plan prices and sums (planning/plan.py):
    # work(audit, model name) -> training.planned.Work, the suite's declared work on one model;
    # units(audit, model name, fresh instance) -> [training.planned.Unit], units of work it times
    # itself (none for a model it does not measure: the probe times only what will run);
    # cuts(audit) -> [(label, changes)], settings that make it cheaper, offered when over budget
    # parts(audit, model name) -> [training.planned.Part]: parts of its job that run on their own
    # first (each a job of the graph: the poisoned sets train side by side on a cluster)
    work: str | None = None
    units: str | None = None
    cuts: str | None = None
    parts: str | None = None
    trend: str | None = None  # the per-model finding id suffix plotted across saved runs, e.g. "[linf]"
    trend_check: str | None = None  # ... of this check


SUITES: dict[str, SuiteInfo] = {s.name: s for s in (
    SuiteInfo(
        "adversarial", "Adversarial evasion",
        note="One threat model per number: Linf at eps and L2 at eps_l2 each have their own worst "
             "case, comparison and curve. A model whose gradient-masking checks fail is attacked "
             "harder (more black-box queries, transfer, BPDA, EOT) and its findings are at best "
             "inconclusive.",
        coverage=(
            CoverageRow("Evasion, white-box and black-box (attack ensemble, worst case per threat model)",
                        "worst_case_robust_accuracy", ("MEASURE 2.7",)),
            CoverageRow("Evasion, transfer between architectures", "transfer_attack_vs_baseline", ("MEASURE 2.7",)),
            CoverageRow("Gradient-masking and evaluation sanity checks", "sanity_", ("MEASURE 2.13",)),
        ),
        curves=(CurvePlot("worst_case_robust_accuracy", "curve", "eps", "PGD-Linf robust accuracy against budget",
                          "Linf budget eps (input units)", "robust accuracy (share of test inputs)", level="linf"),
                CurvePlot("worst_case_robust_accuracy", "curve", "eps", "PGD-L2 robust accuracy against budget",
                          "L2 budget eps (input units)", "robust accuracy (share of test inputs)", level="l2")),
        prefetch="adversarial:prefetch", work="adversarial:planned_work", parts="adversarial:planned_parts",
        trend_check="worst_case_robust_accuracy", trend="[linf]",
    ),
    SuiteInfo(
        "poisoning", "Data poisoning",
        note="Every poisoned model is trained on a poisoned copy of the training set (one poisoned "
             "set per attack and rate, shared by all architectures and seeds): retrained from scratch, "
             "or, where poisoning.mode takes the cheaper way (users' models by default), its clean "
             "checkpoint fine-tuned on the backdoored sets at fewer rates and seeds; each is compared "
             "with the clean model of the same seed. Detectors are scored against the "
             "known poisoned samples; the training-set scan and the integrity checks run on the "
             "real data, whose poison is unknown.",
        coverage=(
            CoverageRow("Availability poisoning (random label flipping, several rates)", "label_flip_degradation",
                        ("MEASURE 2.7", "MEASURE 2.1")),
            CoverageRow("Targeted poisoning (class-pair label flipping)", "targeted_label_flip", ("MEASURE 2.7",)),
            CoverageRow("Backdoor poisoning (BadNets patch trigger)", "backdoor_attack_success", ("MEASURE 2.7",),
                        ("image",)),
            CoverageRow("Backdoor poisoning (feature-space trigger: features set to their extreme value)",
                        "backdoor_attack_success", ("MEASURE 2.7",), ("tabular",)),
            CoverageRow("Poisoned-sample detection (spectral signatures, activation clustering)", "poison_detection",
                        ("MEASURE 2.7",)),
            CoverageRow("Scan of the audited training set for poison", "training_set_scan", ("MEASURE 2.1", "MEASURE 2.7")),
            CoverageRow("One verdict per training set (every model's scan combined)", "training_set_verdict",
                        ("MEASURE 2.1", "MEASURE 2.7")),
            CoverageRow("Data integrity (split leakage, duplicates within train and within test, label errors)", "split_leakage", ("MEASURE 2.1",)),
        ),
        curves=(
            CurvePlot("label_flip_degradation", "curve", "rate", "Clean accuracy against the share of labels flipped",
                      "share of training labels flipped at random", "clean test accuracy"),
            CurvePlot("targeted_label_flip", "curve", "rate", "Source-class test inputs sent to the target class",
                      "share of the source class relabelled", "share of source-class inputs predicted as the target"),
            CurvePlot("backdoor_attack_success", "curve", "rate", "Backdoor attack success against the poison rate",
                      "share of the training set poisoned", "attack success rate (share of triggered inputs)"),
        ),
        prefetch="poisoning:prefetch", work="poisoning:planned_work", units="poisoning:probe_units",
        cuts="poisoning:budget_cuts", parts="poisoning:planned_parts", trend_check="poison_detection", trend="",
    ),
    SuiteInfo(
        "ood", "Out-of-distribution detection and distribution shift",
        note="In-distribution inputs are the positive class and every detector's score is higher for "
             "inputs it believes in-distribution. AUROC is P(ID score > OOD score), ties counting one "
             "half; AUPR-IN ranks by the score with ID positive, AUPR-OUT by the negated score with OOD "
             "positive; FPR@95TPR is the share of OOD inputs accepted at the largest threshold that "
             "accepts at least 95% of ID inputs. Near OOD: rotated and quadrant-shuffled test inputs; far "
             "OOD: uniform noise and natural-image patches. The detector each finding judges is chosen on "
             "the validation split and a separate OOD draw.",
        coverage=(
            CoverageRow("Near- and far-OOD detection (every registered detector: logit-, gradient- and feature-based)", "ood_detection",
                        ("MEASURE 2.5", "MEASURE 2.6")),
            CoverageRow("Near OOD by image transforms (rotation, quadrant shuffle); far OOD by natural-image patches",
                        "ood_detection", ("MEASURE 2.5",), ("image",)),
            CoverageRow("Near OOD by feature permutation; far OOD in the unit box", "ood_detection", ("MEASURE 2.5",),
                        ("tabular",)),
            CoverageRow("Selective prediction (risk-coverage)", "selective_prediction", ("MEASURE 2.6",)),
            CoverageRow("Image corruptions (noise, blur, contrast, brightness, rotation, translation, pixelation, "
                        "salt and pepper) at five severities, mCE vs ReLU", "corruption_robustness", ("MEASURE 2.5",),
                        ("image",)),
            CoverageRow("Tabular shifts (noise per feature, missing features imputed, scaling drift) at five "
                        "severities", "corruption_robustness", ("MEASURE 2.5",), ("tabular",)),
            CoverageRow("Subpopulation shift (a feature's top range held out of training)", "subpopulation_shift",
                        ("MEASURE 2.5",), ("tabular",)),
            CoverageRow("Calibration under shift (ECE)", "calibration_under_shift", ("MEASURE 2.5", "MEASURE 2.6")),
        ),
        curves=tuple(
            CurvePlot("ood_detection", "roc_first_seed", None, f"ROC curves, {level} OOD, chosen detector, first seed "
                      "(in-distribution positive)", "false positive rate", "true positive rate", True, level)
            for level in ("near", "far")) + (
            CurvePlot("corruption_robustness", "curve", "severity",
                      "Accuracy against corruption severity (mean of all corruptions)",
                      "severity (0 = clean, 5 = strongest)", "test accuracy (share)"),
            CurvePlot("selective_prediction", "risk_coverage", None,
                      "Risk-coverage curves, first seed (abstain on the least confident first)",
                      "coverage (share of inputs accepted)", "risk (error rate on the accepted inputs)"),
        ),
        prefetch="ood:prefetch", work="ood:planned_work", trend_check="ood_detection", trend="[far]",
    ),
    SuiteInfo(
        "numerical", "Numerical regression",
        coverage=(
            CoverageRow("SwiGLU op against a float64 reference", "swiglu_op_property", ("MEASURE 2.5",)),
            CoverageRow("Half-precision parity and overflow headroom", "precision_parity", ("MEASURE 2.5", "MEASURE 2.6")),
            CoverageRow("Determinism and golden outputs over time", "golden_outputs", ("MEASURE 4.3",)),
            CoverageRow("CPU vs accelerator parity", "cpu_vs_accelerator", ("MEASURE 2.5",)),
        ),
        work="numerical:planned_work",
    ),
    SuiteInfo(
        "deployment", "Deployment precision: activation outliers and quantised inference",
        note="Each trained model as it would be shipped in low precision: int8 dynamic quantisation of the "
             "linear layers (torch.ao.quantization, run on the CPU) and float8 e4m3 casts of the weights and "
             "the FFN activations (simulated by rounding through float8, on every device), 32 inputs per "
             "call, against its float32 self on the same inputs. The FFN's hidden activation (the input of "
             "its down projection) is found by the LLaMA naming (up_proj, down_proj) or by a linear layer "
             "marked `swiglu_audit_ffn = True`; its outliers are also recorded at every learning-curve "
             "point of training.",
        coverage=(
            CoverageRow("FFN activation outliers (largest / median, kurtosis, outlier channels) and their growth "
                        "over training", "ffn_activation_outliers", ("MEASURE 2.5", "MEASURE 2.3")),
            CoverageRow("Accuracy, prediction flips and robust accuracy after int8 dynamic quantisation and "
                        "float8 (e4m3, simulated) casts", "quantised_accuracy", ("MEASURE 2.3", "MEASURE 2.5")),
            CoverageRow("Accuracy lost to quantisation, candidate vs baseline", "quantised_accuracy_vs_baseline",
                        ("MEASURE 2.3", "MEASURE 2.5")),
            CoverageRow("FFN outliers, candidate vs baseline", "ffn_outliers_vs_baseline", ("MEASURE 2.5",)),
        ),
        curves=(CurvePlot("ffn_activation_outliers", "growth_curve", "step",
                          "FFN activation outliers over training (worst layer, mean over seeds)", "training step",
                          "log10 (largest / median |FFN hidden activation|)"),),
        prefetch="deployment:prefetch", after=("adversarial",), work="deployment:planned_work",
    ),
    SuiteInfo(
        "fairness", "Fairness: who pays for the errors",
        note="Per class, every model's outcomes from the other suites' own measurements (test accuracy, robust "
             "accuracy under the adversarial suite's Linf worst case, accuracy under the OOD suite's "
             "corruptions); per group, where the user names groups (a groups_test array in the dataset, or "
             "fairness.group_feature for (N, D) data), fairlearn's group metrics. Intervals over seeds and "
             "stratified resamples of the test inputs (each class or group keeps its size). Per-model "
             "disparities WARN at most; the candidate-vs-baseline comparisons (does the swap amplify a "
             "disparity?) may FAIL.",
        coverage=(
            CoverageRow("Disparity across classes: accuracy, robust accuracy and accuracy under corruptions per "
                        "class, worst class and largest gap", "class_disparity", ("MEASURE 2.11",)),
            CoverageRow("Disparity across user-named groups (fairlearn: accuracy and selection rate per group, "
                        "demographic parity, equalised odds, worst-group accuracy)", "group_disparity",
                        ("MEASURE 2.11",), needs="groups (groups_test in the dataset, or fairness.group_feature)"),
            CoverageRow("Amplification: worst-class accuracy, candidate vs baseline", "worst_class_accuracy_vs_baseline",
                        ("MEASURE 2.11",)),
            CoverageRow("Amplification: worst-group accuracy, candidate vs baseline",
                        "worst_group_accuracy_vs_baseline", ("MEASURE 2.11",),
                        needs="groups (groups_test in the dataset, or fairness.group_feature)"),
            CoverageRow("Amplification: demographic-parity and equalised-odds gaps, candidate vs baseline",
                        "group_parity_vs_baseline", ("MEASURE 2.11",),
                        needs="groups (groups_test in the dataset, or fairness.group_feature)"),
        ),
        curves=tuple(
            CurvePlot("class_disparity", "per_class", "class", f"Per-class {what}, every model (mean over seeds)",
                      "class", what, level=level)
            for level, what in (("accuracy", "accuracy"), ("robust", "robust accuracy (Linf worst case)"),
                                ("corrupted", "accuracy under corruptions"))) + (
            CurvePlot("group_disparity", "group_curve", "group", "Per-group accuracy, every model (mean over seeds; "
                      "groups in the order of the finding's by_group table)", "group (index)", "accuracy"),),
        work="fairness:planned_work",
    ),
    SuiteInfo(
        "privacy", "Privacy: membership inference",
        note="Members are training records of the audited models, non-members records of the validation and "
             "test splits no audited model trained on, in equal numbers. RMIA scores each record by the "
             "model's probability of its true label against the reference models' that did not train on it "
             "(trained with the harness's recipe on random halves of all the records; privacy.reference_models "
             "per model; the offline form of Pr(x)); the loss-threshold attack is the baseline it must beat, "
             "and the stronger is judged. TPR at 1% and 0.1% FPR and AUROC, with intervals over seeds and "
             "resampled records, conditional on the reference models.",
        coverage=(
            CoverageRow("Membership inference (RMIA with reference models; loss-threshold baseline): TPR at low "
                        "FPR, AUROC", "membership_inference", ("MEASURE 2.10",)),
            CoverageRow("Membership leakage, candidate vs baseline", "membership_inference_vs_baseline",
                        ("MEASURE 2.10",)),
        ),
        prefetch="privacy:prefetch", work="privacy:planned_work", cuts="privacy:budget_cuts",
    ),
    SuiteInfo(
        "efficiency", "Efficiency claim",
        note="What the candidate buys, measured on the audit's own training (no extra training runs): "
             "learning curves against steps, wall time and FLOPs counted by torch.utils.flop_counter, "
             "the compute to reach one validation-accuracy target per family, step time, inference "
             "latency and throughput, and training memory. Wall-clock figures come from a machine the "
             "audit shares with its own workers: indicative, never a FAIL.",
        coverage=(
            CoverageRow("Efficiency claim (accuracy at matched parameters)", "clean_accuracy_vs_baseline",
                        ("MAP 3.1", "MEASURE 2.3")),
            CoverageRow("Compute to a target accuracy (steps, FLOPs, seconds)", "flops_to_target_vs_baseline",
                        ("MEASURE 2.3", "MEASURE 2.12", "MAP 3.1")),
            CoverageRow("Inference latency, throughput and training memory", "latency_vs_baseline",
                        ("MEASURE 2.3", "MEASURE 2.12")),
        ),
        curves=tuple(
            CurvePlot("training_efficiency", f"accuracy_vs_{key}", x_field,
                      f"Validation accuracy against training {what} (mean over seeds)", x_label, "validation accuracy")
            for key, x_field, what, x_label in (("flops", "flops", "FLOPs", "training FLOPs"),
                                                ("steps", "step", "steps", "training steps"),
                                                ("seconds", "seconds", "time", "seconds of training"))) + (
            CurvePlot("training_efficiency", "loss_vs_flops", "flops",
                      "Validation loss against training FLOPs (mean over seeds)", "training FLOPs",
                      "validation cross-entropy"),
        ),
    ),
    SuiteInfo(
        "drift", "Drift on live data",
        note="Runs on the live inputs the user gives (x_live, optionally y_live): a kernel two-sample test "
             "against the training inputs, prediction drift per model, the live accuracy measured with "
             "labels or estimated without them (ATC), and the candidate's degradation against each baseline.",
        coverage=(
            CoverageRow("Input drift of live data (MMD two-sample test; per-feature KS with FDR on (N, D) data)",
                        "input_drift", ("MEASURE 2.4", "MANAGE 4.1"), needs="live data (x_live, or `live = ...`)"),
            CoverageRow("Prediction drift and accuracy on live data (measured, or estimated without labels)",
                        "live_accuracy", ("MEASURE 2.4", "MANAGE 4.1"), needs="live data (x_live, or `live = ...`)"),
            CoverageRow("Degradation under the live drift, candidate vs baseline", "drift_degradation_vs_baseline",
                        ("MEASURE 2.4",), needs="live data (x_live, or `live = ...`)"),
        ),
        prefetch="drift:prefetch", in_memory=True,
    ),
)}

def job_of(suite: str) -> str:
    """The job of the audit's graph that does a suite's expensive work: the suite's own, when it
    prefetches into the cache; else "checks" (the pytest items do it themselves)."""
    info = SUITES[suite]
    return suite if info.prefetch and not info.in_memory else "checks"


def job_suites() -> tuple[str, ...]:
    """The suites with a job per model in the audit's graph."""
    return tuple(name for name in SUITES if job_of(name) == name)

# What no suite of this version measures (MEASURE 1.1 asks to list it too).
NOT_MEASURED = (
    CoverageRow("Privacy: model inversion and attribute inference", None, ("MEASURE 2.10",)),
)
