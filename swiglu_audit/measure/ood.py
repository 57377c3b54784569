"""OOD and shift measurements per model, over all training seeds, memoised per process.

Detector scores are computed twice: on the test split with OOD sets drawn with seed 0 (what the
findings report), and on the validation split with OOD sets drawn with seed 1 (only to choose the
detector a finding judges, so that the choice does not flatter the test numbers).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ModelContractError
from ..methods import calibration, corruptions, ood_detectors, ood_metrics, ood_sets
from ..methods.calibration import aurc
from ..methods.corruptions import SEVERITIES, applicable_corruptions, corrupt
from ..methods.ood_detectors import DETECTORS, OOD_DETECTORS, DetectorParams, Evidence
from ..methods.ood_sets import LEVELS, OOD_SETS, sets_for, sets_of_level
from ..training import evaluation_rows
from ..training import features as features_module
from ..training.cache import code_digest
from ..training.features import penultimate_features
from ..training.planned import Work
from ..training.specs import USER_GROUP
from ..training.train import predict_logits
from .predictions import predicted_as

if TYPE_CHECKING:  # the session is passed in; this layer never imports it at run time
    from ..session import AuditSession

SPLIT_SEEDS = {"test": 0, "val": 1}  # OOD draws: one for reporting, another for choosing


def planned_passes(config, data) -> tuple[int, int]:
    """(examples passed forward, examples passed forward and backward) per model and seed by the
    OOD suite (what the plan counts): per split (validation, test) the logits, ODIN (a forward and
    backward pass, then a forward one) and the features of the in-distribution and OOD sets; the
    training split's features; the corrupted test sets."""
    n_ood = config.ood.n_examples
    inputs = (1 + len(sets_for(data.modality))) * n_ood
    names, _ = applicable_corruptions(config.ood.corruptions, data.modality)
    forward = 2 * inputs * 3 + len(data.y_train) + len(names) * len(SEVERITIES) * n_ood
    return forward, 2 * inputs


def planned_work(audit: AuditSession, name: str) -> Work:
    """The OOD job's declared work on one model: `planned_passes` for every seed."""
    forward, gradient = planned_passes(audit.config, audit.data)
    seeds = len(audit.zoo.trained_seeds(name))
    return Work(forward_examples=seeds * forward, gradient_examples=seeds * gradient)


def _id_inputs(audit: AuditSession, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return audit.data.evaluation_subset(split, audit.config.ood.n_examples)


def ood_inputs(audit: AuditSession, split: str) -> dict[str, torch.Tensor]:
    def build():
        x_id, _ = _id_inputs(audit, split)
        return {s.name: s.build(x_id, SPLIT_SEEDS[split]) for s in sets_for(audit.data.modality)}
    return audit.memo(("ood-inputs", split), build)


def _cached(audit: AuditSession, name: str, kind: str, settings: dict, compute):
    return audit.cached_arrays(kind, audit.zoo.models(name), settings, _CODE_DIGEST, compute)


def detector_scores(audit: AuditSession, name: str, split: str = "test") -> dict:
    """{"id": {detector: seeds x n}, "ood": {set: {detector: seeds x n}}, "correct": seeds x n,
    "unavailable": {detector: why}, "detectors": [available detectors]}."""
    def compute():
        cfg = audit.config.ood
        settings = {"split": split, **{k: getattr(cfg, k) for k in ("n_examples", "knn_k", "odin_temperature", "odin_eps")}}
        arrays, record = _cached(audit, name, "ood-scores", settings, lambda: _compute_scores(audit, name, split))
        return {"id": {d: arrays[f"id/{d}"] for d in record["detectors"]},
                "ood": {o.name: {d: arrays[f"ood/{o.name}/{d}"] for d in record["detectors"]}
                        for o in sets_for(audit.data.modality)},
                "correct": arrays["correct"], **record}
    return audit.memo(("ood-scores", name, split), compute)


def _compute_scores(audit: AuditSession, name: str, split: str) -> tuple[dict, dict]:
    x_id, y_id = _id_inputs(audit, split)
    inputs = {"__id__": x_id, **ood_inputs(audit, split)}
    per_seed, correct, unavailable = [], [], {}
    for m in audit.zoo.models(name):
        detectors, missing = _fitted_detectors(audit, m)
        unavailable.update(missing)
        needs_features = any(d.needs == "features" for d in detectors.values())
        scores = {}
        for key, x in inputs.items():
            logits = predict_logits(m.module, x, audit.device)
            features = penultimate_features(m.module, x, audit.device).numpy() if needs_features else None
            evidence = Evidence(x, logits, m.module, audit.device, features)
            scores[key] = {d: detector.score(evidence) for d, detector in detectors.items()}
            if key == "__id__":
                correct.append((logits.argmax(1) == y_id).numpy())
        per_seed.append(scores)
    available = [d for d in DETECTORS if d not in unavailable]
    arrays = {("id/" if key == "__id__" else f"ood/{key}/") + d: np.stack([s[key][d] for s in per_seed])
              for key in inputs for d in available}
    arrays["correct"] = np.stack(correct)
    return arrays, {"unavailable": unavailable, "detectors": available}


def prefetch(audit: AuditSession, name: str) -> None:
    """Every cached OOD measurement of `name`: the xdist prefetch."""
    for split in SPLIT_SEEDS:
        detector_scores(audit, name, split)
    for level in LEVELS:
        detector_table(audit, name, level)
    corruption(audit, name)


def detector_table(audit: AuditSession, name: str, level: str) -> list[dict]:
    """One record per detector and OOD set of the level: each metric with its interval (seeds, and bootstrap resamples of the inputs).
    Cached on disk (thousands of bootstrap replicates per model)."""
    cfg, conf = audit.config.ood, audit.config.policy["confidence_level"]

    def build():
        scores = detector_scores(audit, name)
        rows = []
        for ood_set in sets_of_level(level, audit.data.modality):
            for det in scores["detectors"]:
                row = {"detector": det, "ood_set": ood_set.name}
                for metric in ood_metrics.METRICS:
                    est = ood_metrics.estimate(metric, scores["id"][det], scores["ood"][ood_set.name][det],
                                               conf, cfg.bootstrap)
                    row.update({metric: est.value, f"{metric}_ci_low": est.ci_low, f"{metric}_ci_high": est.ci_high})
                rows.append(row)
        return {}, {"rows": rows}

    def compute():
        settings = {"level": level, "confidence_level": conf,
                    **{k: getattr(cfg, k) for k in ("n_examples", "bootstrap", "knn_k", "odin_temperature", "odin_eps")}}
        return _cached(audit, name, "ood-table", settings, build)[1]["rows"]
    return audit.memo(("ood-table", name, level), compute)


def _fitted_detectors(audit: AuditSession, model) -> tuple[dict, dict]:
    """(detector name -> the registered detector, fitted on this model's training features where
    it learns; detector name -> why it is unavailable), once per process (the test and
    validation splits use the same fit). A model without penultimate features loses only the
    detectors that read them."""
    def fit():
        cfg = audit.config.ood
        params = DetectorParams(cfg.knn_k, cfg.odin_temperature, cfg.odin_eps)
        detectors = {name: make(params) for name, make in OOD_DETECTORS.items()}
        learners = [name for name, d in detectors.items() if d.needs == "features"]
        if not learners:
            return detectors, {}
        try:
            train_features = audit.train_features(model)
        except ModelContractError as exc:
            return {n: d for n, d in detectors.items() if n not in learners}, {n: str(exc) for n in learners}
        labels = audit.data.y_train.numpy()
        return {n: d.fit(train_features, labels) if n in learners else d for n, d in detectors.items()}, {}
    return audit.memo(("fitted-ood-detectors", model.key), fit)


def level_scores(scores: dict, level: str, detector: str) -> dict:
    """{"in", "out"}: the level's OOD sets pooled, for one detector (seeds x examples each)."""
    names = [s.name for s in OOD_SETS if s.level == level and s.name in scores["ood"]]  # the data's own sets
    out = np.concatenate([scores["ood"][n][detector] for n in names], axis=1)
    return {"in": scores["id"][detector], "out": out}


def chosen_detector(audit: AuditSession, name: str, level: str) -> tuple[str, dict]:
    """The detector with the best mean AUROC over the level's sets on the validation split."""
    val = detector_scores(audit, name, "val")
    by_detector = {d: float(np.mean([ood_metrics.per_seed("auroc", val["id"][d], val["ood"][s.name][d]).mean()
                                     for s in sets_of_level(level, audit.data.modality)]))
                   for d in val["detectors"]}
    return max(by_detector, key=by_detector.get), by_detector


def selective_detector(audit: AuditSession, name: str) -> tuple[str, dict]:
    """The confidence score with the lowest validation AURC (seed-averaged)."""
    val = detector_scores(audit, name, "val")
    by_detector = {d: float(np.mean([aurc(s, c) for s, c in zip(val["id"][d], val["correct"])]))
                   for d in val["detectors"]}
    return min(by_detector, key=by_detector.get), by_detector


def corruption(audit: AuditSession, name: str) -> dict:
    """Per corruption and severity: correctness and confidence on the test inputs (seeds x n);
    only the corruptions that apply to the data's modality (the others are listed as such)."""
    names, not_applicable = applicable_corruptions(audit.config.ood.corruptions, audit.data.modality)
    keys = [("clean", 0)] + [(c, s) for c in names for s in SEVERITIES]

    def measure():
        x, y = _id_inputs(audit, "test")
        arrays = {}
        for c, s in keys:
            shifted = corrupt(x, c, s, reference=audit.data.x_train) if c != "clean" else x
            rows = [predict_logits(m.module, shifted, audit.device)
                    for m in audit.zoo.models(name)]
            arrays[f"correct/{c}/{s}"] = np.stack([(r.argmax(1) == y).numpy() for r in rows])
            arrays[f"confidence/{c}/{s}"] = np.stack([torch.softmax(r, 1).max(1).values.numpy() for r in rows])
        return arrays, {}

    def compute():
        settings = {"n_examples": audit.config.ood.n_examples, "corruptions": names}
        arrays, _ = _cached(audit, name, "corruption", settings, measure)
        return {"corruptions": names, "not_applicable": not_applicable, "modality": audit.data.modality,
                "correct": {k: arrays[f"correct/{k[0]}/{k[1]}"] for k in keys},
                "confidence": {k: arrays[f"confidence/{k[0]}/{k[1]}"] for k in keys}}
    return audit.memo(("corruption", name), compute)


SUBPOPULATION_QUANTILE = 0.8  # the top fifth of one feature's range is held out


def subpopulation_split(x_train: torch.Tensor) -> tuple[int, float] | None:
    """(feature, threshold) of the held-out range: the feature with the largest variance among
    those whose SUBPOPULATION_QUANTILE splits the training rows (some, not all, below it). A 0/1
    column with fewer ones than the quantile's share has its quantile at 0, and `x < 0` would keep
    no training row. None when no feature splits (every feature constant, or nearly so)."""
    x = x_train.reshape(len(x_train), -1)
    for feature in torch.argsort(x.var(0), descending=True, stable=True).tolist():
        threshold = float(torch.quantile(x[:, feature].float(), SUBPOPULATION_QUANTILE))
        kept = int((x[:, feature] < threshold).sum())
        if 0 < kept < len(x):
            return feature, threshold
    return None


def subpopulation(audit: AuditSession, name: str) -> dict:
    """Tabular data only: correctness on the test inputs in the top fifth of the training range
    of the feature with the largest variance (among those the split can divide,
    `subpopulation_split`), for the models trained on everything ("clean") and for the same
    architecture retrained without the training samples in that range ("held_out"), seeds x
    inputs each. {"feature": None, "reason": ...} when no feature can be split."""
    def compute():
        data = audit.data
        x_train = data.x_train.reshape(len(data.x_train), -1)
        split = subpopulation_split(x_train)
        if split is None:
            return {"feature": None, "reason": (
                f"no feature's {SUBPOPULATION_QUANTILE:g} quantile splits the training inputs (each feature is "
                "constant, or holds one value in more than that share of rows): no subpopulation to hold out")}
        feature, threshold = split
        keep = x_train[:, feature] < threshold
        x_test = data.x_test.reshape(len(data.x_test), -1)
        inside = x_test[:, feature] >= threshold
        held_out = audit.zoo.models(name, inputs=data.x_train[keep], labels=data.y_train[keep],
                                    tag=f"subpopulation-f{feature}-q{SUBPOPULATION_QUANTILE}")
        x_sub, y_sub = data.x_test[inside], data.y_test[inside]
        correct = lambda models: predicted_as(audit, models, x_sub, y_sub)
        return {"feature": feature, "threshold": threshold, "n_test": int(inside.sum()),
                "n_train_held_out": int((~keep).sum()), "share_held_out": float((~keep).float().mean()),
                "clean": correct(audit.zoo.models(name)), "held_out": correct(held_out)}
    return audit.memo(("subpopulation", name), compute)


def corruptions_missing(audit: AuditSession) -> str | None:
    """Why the corruption checks cannot run here (no configured corruption applies to the data's
    modality), or None."""
    names, not_applicable = applicable_corruptions(audit.config.ood.corruptions, audit.data.modality)
    if names:
        return None
    configured = f"{', '.join(not_applicable)}, none of which applies" if not_applicable else "none"
    return (f"no configured corruption applies to {audit.data.modality} data ([tool.swiglu_audit.ood] corruptions: "
            f"{configured}): name one or more {audit.data.modality} corruptions there to measure accuracy and "
            "calibration under corruptions")


def reference_model(audit: AuditSession, name: str) -> str | None:
    """The model mCE is relative to: the ReLU variant of the same family; for user models, the
    first baseline listed. None when the group has no such model."""
    spec = audit.zoo.spec(name)
    group = [s for s in audit.zoo.specs.values() if s.group == spec.group]
    if spec.group != USER_GROUP:
        relu = [s.name for s in group if s.ffn == "relu"]
        return relu[0] if relu else None
    baselines = [s.name for s in group if s.role == "baseline"]
    return baselines[0] if baselines else None


def mean_corrupted_correct(result: dict) -> np.ndarray:
    """Per seed and test input: accuracy averaged over every corruption and severity."""
    return np.mean([m for (c, _), m in result["correct"].items() if c != "clean"], axis=0)


def corruption_errors(result: dict, reference: dict) -> dict[str, float | None]:
    """Corruption error per corruption: errors summed over severities / the reference's."""
    out = {}
    for c in result["corruptions"]:
        err = sum(1 - result["correct"][(c, s)].mean() for s in SEVERITIES)
        ref = sum(1 - reference["correct"][(c, s)].mean() for s in SEVERITIES)
        out[c] = float(err / ref) if ref > 0 else None
    return out


_CODE_DIGEST = code_digest(sys.modules[__name__], evaluation_rows, ood_detectors, ood_metrics, ood_sets, corruptions, calibration,
                           features_module)
