"""The training-set scan's verdicts on cases its rules were not tuned on, and on clean models.

Four rounds of cases, none of them the seventh stop's (bench_trigger_scan.py: digits, one SwiGLU
MLP of seed 0, kinds corner patch, centre patch, checkerboard, blend, sparse and clean-label,
targets 3 and 7), on which the scan's thresholds were chosen:

- `--round tuning`: the round the verdict's two sample-level rules were chosen on (a flagged group
  that looks like the target class without the trigger's region is a natural shortcut or
  clean-label poison; one that looks like another class is relabelled poison, whatever the class's
  anomaly index). Clean models: the five MLP variants on digits (seeds 0 and 1), on digits split
  another way, on a synthetic shapes set and a synthetic tabular set. Backdoors: kinds never used
  before (a 2x2 diagonal, a 1x4 bar, a dim patch), the ReLU, GELU and GeGLU MLPs and another
  SwiGLU seed, target 5, shapes and tabular;
- `--round tuning-2`: first run as the held-out round, it showed the first form of the
  relabelled rule (a flagged group whose samples' nearest neighbours mostly carry other labels)
  accusing a clean tabular class whose own samples' neighbours mostly carry other labels too (1
  false FAIL in 21 clean models, and 3 more FAILs naming that clean class in backdoored sets). The
  rule now compares the flagged samples with the class's own samples (`own_class_likeness`), and
  this round became a tuning round (its first results: bench/scan-verdicts-tuning-2-first-rule.json).
  Clean models: seeds 3 and 4 on digits, a third split, another shapes set (14x14) and another
  tabular set (16 features, 8 classes); backdoors: a 3x3 cross, a three-pixel L, a 10% blend of
  another noise image, target 8, 4 and 3;
- `--round tuning-3`: held out for the likeness rule (0 FAIL on its 21 clean models), it showed
  4 clean models whose flagged groups were a class's own strokes (likeness 0.9-1.0) reported as
  an inconclusive WARN. Such samples only *rest on* the recovered trigger; clean-label poison is
  one pattern stamped on samples of the class, which they would *carry*. So a group that looks
  like its class and carries no shared pattern is now a natural shortcut, set aside (the power
  decides), and this round became a tuning round (bench/scan-verdicts-tuning-3-likeness-rule.json).
  Clean models: seeds 5 and 6 on digits, a fourth split, a 10x10 shapes set, a tabular set of 20
  features and 5 classes; backdoors: two dots, a hollow square, a mixed-intensity patch;
- `--round held-out`, the headline: nothing in it was used to choose anything. Clean models: the
  five variants on digits with seeds 8 and 9, on a fifth split, on a 16x16 shapes set and a
  tabular set of 28 features and 7 classes. Backdoors: kinds in no other round and not in the
  panel (a four-pixel T at the bottom middle, a three-pixel stripe near the top-right edge; on the
  tabular set, runs of features), targets 9 (digits), 3 (shapes) and 4 (tabular), new seeds.

Each case trains one model (the standard recipe, 30 epochs), scans its training set, and judges
it with the product's decision table (`checks.poison_detection.SCAN`) and the product's power
panel: each default threat trigger kind planted at the threat rate (3%) in the case's own
training set, a model of the same architecture and seed trained on it, scanned, scored. So the
verdict of every row is the one an audit of that data and model would give (one model: no other
model's scan caps it).

    python bench/bench_scan_verdicts.py --round tuning --out bench/scan-verdicts-tuning.json [--shard 0/2] [--art]
    python bench/bench_scan_verdicts.py --round tuning-2 --out bench/scan-verdicts-tuning-2.json [--shard 0/2] [--art]
    python bench/bench_scan_verdicts.py --round tuning-3 --out bench/scan-verdicts-tuning-3.json [--shard 0/2] [--art]
    python bench/bench_scan_verdicts.py --round held-out --out bench/scan-verdicts-heldout.json [--shard 0/2] [--art]
    python bench/bench_scan_verdicts.py --table bench/scan-verdicts-heldout.json

With `--art`, IBM ART's ActivationDefence and SpectralSignatureDefense run on every backdoored
case as the reference (ART installed apart: see bench_trigger_scan.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swiglu_audit.checks.poison_detection import (
    SCAN,
    TRAINING_SET_VERDICT,
    census_group,
    natural_shortcut,
    smallest_failing_group,
)
from swiglu_audit.config import build_config
from swiglu_audit.measure.poisoning import MIN_LEARNED_BACKDOOR, listed_samples, planted_found
from swiglu_audit.measure.poisoning import scan_facts as scan_facts_of
from swiglu_audit.methods import relabel_census, triggers
from swiglu_audit.methods.backdoor_scan import scan
from swiglu_audit.training.data import AuditData, load_digits_data, make_audit_data
from swiglu_audit.training.features import penultimate_features
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")
CONFIG = build_config({}, profile="standard")
POLICY, POISONING = CONFIG.policy, CONFIG.poisoning


# --- data the rules never saw --------------------------------------------------------------------

def _split(name: str, x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, modality: str = "image") -> AuditData:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    splits = {k: (torch.from_numpy(x[i]), torch.from_numpy(y[i].astype(np.int64)))
              for k, i in (("train", train), ("val", val), ("test", test))}
    return make_audit_data(name, splits, n_classes=n_classes, modality=modality)


def digits_resplit(seed: int = 7) -> AuditData:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split(f"digits-resplit-{seed}", (d.images / 16.0).astype(np.float32)[:, None], d.target, 10, seed=seed)


def shapes(n: int = 1800, side: int = 12, seed: int = 11) -> AuditData:
    """Six classes of simple shapes at random places and intensities over faint noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.08, (n, 1, side, side)).astype(np.float32)
    y = np.arange(n) % 6
    for i, c in enumerate(y):
        r, k = rng.integers(1, side - 7), rng.integers(1, side - 7)
        v = rng.uniform(0.6, 1.0)
        img = x[i, 0]
        if c == 0:
            img[r:r + 5, k:k + 5] = v  # filled square
        elif c == 1:
            img[r:r + 6, k] = img[r:r + 6, k + 5] = img[r, k:k + 6] = img[r + 5, k:k + 6] = v  # hollow square
        elif c == 2:
            img[r + 2, k:k + 5] = img[r:r + 5, k + 2] = v  # plus
        elif c == 3:
            img[r + 2:r + 4, k:k + 6] = v  # horizontal bar
        elif c == 4:
            img[r:r + 6, k + 2:k + 4] = v  # vertical bar
        else:
            for t in range(6):
                img[r + t, k + t] = v  # diagonal line
    return _split(f"shapes-{side}px-{seed}", np.clip(x, 0, 1), y, 6, seed=0)


def tabular(seed: int = 3, n_features: int = 24, n_classes: int = 6) -> AuditData:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2400, n_features=n_features, n_informative=12, n_redundant=2,
                               n_classes=n_classes, n_clusters_per_class=2, class_sep=1.5, random_state=seed)
    lo, hi = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
    x = np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)[:, None, None, :]
    return _split(f"tabular-{n_features}f-{n_classes}c-{seed}", x, y, n_classes, seed=0, modality="tabular")


# The tuning round's data (the natural-shortcut and relabelled-group rules were chosen on it) and
# the held-out round's (other seeds, another split, another shapes and tabular set)
DATASETS = {"digits": load_digits_data, "digits-resplit": digits_resplit, "shapes": shapes, "tabular": tabular,
            "digits-resplit-b": lambda: digits_resplit(13), "shapes-b": lambda: shapes(side=14, seed=21),
            "tabular-b": lambda: tabular(seed=9, n_features=16, n_classes=8),
            "digits-resplit-c": lambda: digits_resplit(29), "shapes-c": lambda: shapes(side=10, seed=33),
            "tabular-c": lambda: tabular(seed=17, n_features=20, n_classes=5),
            "digits-resplit-d": lambda: digits_resplit(41), "shapes-d": lambda: shapes(side=16, seed=45),
            "tabular-d": lambda: tabular(seed=23, n_features=28, n_classes=7),
            "digits-resplit-e": lambda: digits_resplit(53), "shapes-e": lambda: shapes(side=13, seed=57),
            "tabular-e": lambda: tabular(seed=61, n_features=22, n_classes=6),
            "digits-resplit-f": lambda: digits_resplit(67), "shapes-f": lambda: shapes(side=15, seed=71),
            "tabular-f": lambda: tabular(seed=79, n_features=26, n_classes=8),
            "digits-resplit-g": lambda: digits_resplit(83), "shapes-g": lambda: shapes(side=11, seed=89),
            "tabular-g": lambda: tabular(seed=97, n_features=18, n_classes=5),
            "digits-resplit-h": lambda: digits_resplit(101), "shapes-h": lambda: shapes(side=17, seed=103),
            "tabular-h": lambda: tabular(seed=107, n_features=30, n_classes=6),
            "digits-resplit-i": lambda: digits_resplit(109), "shapes-i": lambda: shapes(side=18, seed=113),
            "tabular-i": lambda: tabular(seed=127, n_features=14, n_classes=4)}


# --- trigger kinds the rules never saw (the panel's own kinds come from the product) -------------

FAINT_NOISE_SEED = 5


def _heldout_stamp(x: torch.Tensor, kind: str) -> torch.Tensor:
    out = x.clone()
    h, w = x.shape[-2:]
    if kind == "faint_blend":  # 10% of another noise image (the panel's blend: 20%, noise seed 99)
        noise = torch.from_numpy(np.random.default_rng(FAINT_NOISE_SEED).random(tuple(x.shape[1:]))).float()
        return 0.9 * out + 0.1 * noise
    if h == 1:  # tabular: runs of features
        if kind == "diagonal":
            out[..., 3], out[..., 4] = 1.0, 0.0
        elif kind == "bar":
            out[..., w // 2 - 2:w // 2 + 2] = 1.0
        elif kind == "dim_patch":
            out[..., 1:3] = 0.8
        elif kind == "frame":
            out[..., 0], out[..., 1], out[..., 2] = 1.0, 1.0, 0.0
        elif kind == "cross":
            out[..., w - 5:w - 2] = torch.tensor([0.0, 1.0, 0.0])
        elif kind == "two_dots":
            out[..., w // 3], out[..., w // 3 + 2] = 1.0, 1.0
        elif kind == "ring":
            out[..., w - 8:w - 4] = torch.tensor([1.0, 0.0, 0.0, 1.0])
        elif kind == "noise_patch":
            out[..., 5:8] = torch.tensor([0.9, 0.2, 0.7])
        elif kind == "t_shape":
            out[..., w - 3:w] = torch.tensor([1.0, 1.0, 0.0])
        elif kind == "stripe":
            out[..., 0:w:7] = 1.0
        elif kind == "mid_bar":
            out[..., w // 2 - 1:w // 2 + 2] = torch.tensor([1.0, 0.0, 1.0])
        elif kind == "low_l":
            out[..., 1], out[..., 2] = 0.0, 1.0
        elif kind == "dim_dots":
            out[..., w // 5], out[..., (4 * w) // 5] = 0.7, 0.7
        elif kind == "hook":
            out[..., w // 6], out[..., w // 6 + 1] = 1.0, 1.0
        elif kind == "centre_cross":
            out[..., w // 2 - 2:w // 2 + 3] = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0])
        elif kind == "dim_stripe":
            out[..., 0:w:5] = 0.6
        elif kind == "diag3":
            out[..., 1], out[..., 3], out[..., 5] = 1.0, 1.0, 1.0
        elif kind == "inner_pair":
            out[..., w // 2], out[..., w // 2 + 1] = 0.0, 1.0
        elif kind == "dim_corner":
            out[..., w - 2:w] = 0.5
        elif kind == "left_dots":
            out[..., 1], out[..., 4] = 1.0, 0.0
        elif kind == "corner_x":
            out[..., w - 5:w] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
        elif kind == "centre_dash":
            out[..., w // 2 - 1:w // 2 + 2] = 1.0
        elif kind == "top_dash":
            out[..., 2:5] = 1.0
        elif kind == "right_l":
            out[..., w - 4], out[..., w - 3] = 1.0, 0.0
        elif kind == "stroke_dots":
            out[..., w // 2 - 2], out[..., w // 2] = 0.9, 0.9
        return out
    if kind == "diagonal":  # a 2x2 diagonal low on the left
        out[..., h - 3:h - 1, 1:3] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    elif kind == "bar":  # a 1x4 line along the top middle
        out[..., 0, w // 2 - 2:w // 2 + 2] = 1.0
    elif kind == "dim_patch":  # a 2x2 patch at 60% intensity in the top-right corner
        out[..., 0:2, w - 2:w] = 0.6
    elif kind == "frame":  # three pixels of an L in the top-left corner
        out[..., 0, 0:2] = 1.0
        out[..., 1, 0] = 1.0
    elif kind == "cross":  # a 3x3 plus low on the left
        out[..., h - 3:h, 0:3] = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    elif kind == "two_dots":  # two pixels one apart, on the right edge's middle
        out[..., h // 2 - 1, w - 1] = 1.0
        out[..., h // 2 + 1, w - 1] = 1.0
    elif kind == "ring":  # a hollow 3x3 square in the bottom-right corner
        out[..., h - 3:h, w - 3:w] = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    elif kind == "noise_patch":  # a fixed 2x3 patch of mixed intensities at the top middle
        out[..., 0:2, w // 2 - 1:w // 2 + 2] = torch.tensor([[0.9, 0.2, 0.7], [0.3, 1.0, 0.1]])
    elif kind == "t_shape":  # a T of four pixels at the bottom middle
        out[..., h - 2, w // 2 - 1:w // 2 + 2] = 1.0
        out[..., h - 1, w // 2] = 1.0
    elif kind == "stripe":  # a vertical run of three pixels near the right edge, at the top
        out[..., 0:3, w - 2] = 1.0
    elif kind == "mid_bar":  # a vertical run of three pixels in the middle, over the strokes
        out[..., h // 2 - 2:h // 2 + 1, w // 2] = 1.0
    elif kind == "low_l":  # three pixels of an L in the bottom-left corner
        out[..., h - 2:h, 0] = 1.0
        out[..., h - 1, 1] = 1.0
    elif kind == "dim_dots":  # two pixels at 70% intensity in the upper half
        out[..., 1, 2] = 0.7
        out[..., 2, w - 3] = 0.7
    elif kind == "hook":  # three pixels of a hook near the bottom-right corner
        out[..., h - 3, w - 3:w - 1] = 1.0
        out[..., h - 2, w - 2] = 1.0
    elif kind == "centre_cross":  # a plus of five pixels in the middle, over the strokes
        out[..., h // 2 - 1:h // 2 + 2, w // 2] = 1.0
        out[..., h // 2, w // 2 - 1:w // 2 + 2] = 1.0
    elif kind == "dim_stripe":  # a 1x3 run at 50% intensity near the top left
        out[..., 1, 1:4] = 0.5
    elif kind == "diag3":  # a three-pixel diagonal in the top-right corner
        out[..., 0, w - 3] = out[..., 1, w - 2] = out[..., 2, w - 1] = 1.0
    elif kind == "inner_pair":  # two diagonal pixels in the middle, over the strokes
        out[..., h // 2 - 1, w // 2 - 1] = 1.0
        out[..., h // 2, w // 2] = 1.0
    elif kind == "dim_corner":  # a 2x2 patch at 50% intensity in the bottom-left corner
        out[..., h - 2:h, 0:2] = 0.5
    elif kind == "left_dots":  # two pixels one apart on the left edge's middle
        out[..., h // 2 - 1, 0] = 1.0
        out[..., h // 2 + 1, 0] = 1.0
    elif kind == "corner_x":  # an X of five pixels in the bottom-right corner
        for r, k in ((h - 3, w - 3), (h - 3, w - 1), (h - 2, w - 2), (h - 1, w - 3), (h - 1, w - 1)):
            out[..., r, k] = 1.0
    elif kind == "centre_dash":  # a horizontal run of three pixels below the middle, over the strokes
        out[..., h // 2 + 1, w // 2 - 1:w // 2 + 2] = 1.0
    elif kind == "top_dash":  # a 1x3 run on the top edge, left of the middle
        out[..., 0, 2:5] = 1.0
    elif kind == "right_l":  # three pixels of an L on the right edge, low
        out[..., h - 4:h - 2, w - 1] = 1.0
        out[..., h - 3, w - 2] = 1.0
    elif kind == "stroke_dots":  # two pixels at 90% in the middle, over the strokes
        out[..., h // 2, w // 2 - 2] = 0.9
        out[..., h // 2 - 2, w // 2] = 0.9
    return out


def stamp(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind in triggers.STAMPS:
        return triggers.stamp(x, kind, POISONING.trigger_size)
    return _heldout_stamp(x, kind)


def plant(x: torch.Tensor, y: torch.Tensor, kind: str, target: int, rate: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(y.numpy() != target)
    idx = rng.choice(pool, min(len(pool), int(round(rate * len(y)))), replace=False)
    x, y = x.clone(), y.clone()
    x[idx] = stamp(x[idx], kind)
    y[idx] = target
    truth = np.zeros(len(y), dtype=bool)
    truth[idx] = True
    return x, y, truth


# --- one case: train, scan, judge ----------------------------------------------------------------

def train(data: AuditData, x, y, ffn: str, seed: int):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="mlp", ffn=ffn, n_classes=data.n_classes, input_shape=data.input_shape))
    train_model(model, x, y, Recipe(epochs=30), seed, CPU, data.x_val, data.y_val)
    return model.eval()


def success(model, data: AuditData, kind: str, target: int) -> float:
    others = data.x_test[data.y_test != target]
    with torch.no_grad():
        return float((model(stamp(others, kind)).argmax(1) == target).float().mean())


def scan_result(model, data: AuditData, x, y) -> dict:
    """The trigger scan and the relabel census of (x, y) through `model`, in the shape the suite's
    cached scan has (measure.poisoning._trigger_scan)."""
    result = scan(model, x, y, data.n_classes, CPU, features=penultimate_features(model, x, CPU).numpy(),
                  steps=POISONING.scan_steps)
    census = relabel_census.census(model, x, y, data.n_classes, CPU)
    return {"flags": result.flags, "target": result.target, "target_neighbours": result.target_neighbours,
            "class_cohesion": result.class_cohesion, "evidence_carries": result.evidence["carries"],
            "anomaly_index": result.anomaly_index, "mask_l1": result.mask_l1,
            "trigger_success": result.trigger.success if result.trigger else None,
            "census": census.summary(), "census_flags": census.flags}


def scan_facts(model, data: AuditData, x, y) -> tuple[dict, np.ndarray]:
    """The facts the suite gives the scan's decision table (suites/suite_poisoning_data.py), and
    the samples a finding lists (the trigger scan's, and the census's where it names a class)."""
    result = scan_result(model, data, x, y)
    facts = {**scan_facts_of(result, POISONING.threat_rate, POLICY["min_scan_recall"]), "census_summary": result["census"]}
    return facts, listed_samples(result)


def panel_power(data: AuditData, x, y, ffn: str, seed: int, base_model) -> dict:
    """The product's power panel on this training set: each threat kind planted at the threat
    rate (target: the policy's backdoor_target) in (x, y), a model trained, learned?, scanned.
    `base_model`: the model of this architecture and seed trained on (x, y) itself (the base rate)."""
    target = POISONING.backdoor_target
    kinds = {}
    for kind in POISONING.threat_triggers:
        px, py, truth = plant(x, y, kind, target, POISONING.threat_rate, seed=0)
        model = train(data, px, py, ffn, seed)
        learned = success(model, data, kind, target) - success(base_model, data, kind, target)
        if learned < MIN_LEARNED_BACKDOOR:
            kinds[kind] = {"target_found": False, "recall": 0.0, "precision": None, "not_learned": round(learned, 3)}
            continue
        min_group = smallest_failing_group(POISONING.threat_rate, len(py), POLICY["min_scan_recall"])
        kinds[kind] = {**planted_found(scan_result(model, data, px, py), truth, target, min_group),
                       "learned": round(learned, 3)}
    return {"rate": POISONING.threat_rate, "target": target, "kinds": kinds}


def cases(round_: str) -> list[dict]:
    """The tuning round's cases (the rules were chosen on them) or the held-out round's."""
    out = []
    if round_ == "tuning":
        for ffn in ("swiglu", "geglu", "reglu", "gelu", "relu"):
            out += [{"data": "digits", "ffn": ffn, "seed": s, "kind": "none"} for s in (0, 1)]
            out.append({"data": "digits-resplit", "ffn": ffn, "seed": 2, "kind": "none"})
        for data in ("shapes", "tabular"):
            out += [{"data": data, "ffn": ffn, "seed": 0, "kind": "none"} for ffn in ("swiglu", "relu", "gelu")]
        for ffn, seed in (("relu", 0), ("gelu", 0), ("geglu", 0), ("swiglu", 1)):
            for kind in ("diagonal", "bar", "dim_patch"):
                out += [{"data": "digits", "ffn": ffn, "seed": seed, "kind": kind, "rate": r, "target": 5}
                        for r in (0.03, 0.05)]
        for data, target in (("shapes", 1), ("tabular", 2)):
            for ffn in ("swiglu", "relu"):
                out += [{"data": data, "ffn": ffn, "seed": 0, "kind": k, "rate": 0.03, "target": target}
                        for k in ("corner_patch", "diagonal", "sparse" if data == "tabular" else "blend")]
        return out
    return _round_cases(ROUNDS[round_])


@dataclass(frozen=True)
class Round:
    """The cases of a round after the first: clean models on digits (seeds), on a split and on the
    other data sets; backdoors on digits and on the other data sets, at 3%."""
    digits_seeds: tuple[int, ...]
    resplit: str
    resplit_seed: int
    other_seed: int  # the seed of the models on the shapes and tabular sets
    other_clean: tuple[str, ...]  # the variants of the clean models there
    digits_models: tuple[tuple[str, int], ...]  # (variant, seed) of the backdoored digits models
    digits_kinds: tuple[str, ...]
    digits_target: int
    other_backdoors: tuple[tuple[str, int, tuple[str, ...]], ...]  # (data, target, kinds)
    other_models: tuple[str, ...]


ROUNDS = {
    # held out first, then the round the likeness rule was mended on
    "tuning-2": Round((3, 4), "digits-resplit-b", 5, 0, ("swiglu", "geglu", "relu"),
                      (("reglu", 0), ("swiglu", 2), ("relu", 3)), ("cross", "frame", "faint_blend"), 8,
                      (("shapes-b", 4, ("cross", "frame")), ("tabular-b", 3, ("frame", "faint_blend"))),
                      ("swiglu", "gelu")),
    # held out for the likeness rule; the natural-shortcut rule was mended on it
    "tuning-3": Round((5, 6), "digits-resplit-c", 7, 1, ("swiglu", "reglu", "gelu"),
                      (("gelu", 5), ("geglu", 6), ("swiglu", 7)), ("two_dots", "ring", "noise_patch"), 6,
                      (("shapes-c", 2, ("two_dots", "ring")), ("tabular-c", 1, ("two_dots", "ring"))),
                      ("swiglu", "reglu")),
    # held out: seeds, a split, data sets, trigger kinds and targets no rule was chosen on
    "held-out": Round((8, 9), "digits-resplit-d", 10, 2, ("swiglu", "geglu", "relu"),
                      (("relu", 8), ("reglu", 9), ("swiglu", 10)), ("t_shape", "stripe", "two_dots"), 9,
                      (("shapes-d", 3, ("t_shape", "stripe")), ("tabular-d", 4, ("t_shape", "stripe"))),
                      ("swiglu", "gelu")),
    # held out for the relabel census (chosen in the fifteenth stop on the four
    # rounds above, the "held-out" one included, which had been seen): seeds, a split, data sets,
    # trigger kinds (one over the strokes) and targets in no other round
    "held-out-2": Round((11, 12), "digits-resplit-e", 14, 4, ("geglu", "reglu", "relu"),
                        (("gelu", 11), ("geglu", 12), ("relu", 13)), ("mid_bar", "low_l", "dim_dots"), 2,
                        (("shapes-e", 5, ("mid_bar", "low_l")), ("tabular-e", 0, ("mid_bar", "dim_dots"))),
                        ("reglu", "relu")),
    # held out for the census's lead rule (chosen in the fifteenth stop on "held-out-2", which had
    # been seen): seeds, a split, data sets, trigger kinds and targets in no other round
    "held-out-3": Round((15, 16), "digits-resplit-f", 17, 5, ("swiglu", "gelu", "relu"),
                        (("swiglu", 15), ("reglu", 16), ("gelu", 17)), ("hook", "centre_cross", "dim_stripe"), 4,
                        (("shapes-f", 0, ("hook", "centre_cross")), ("tabular-f", 6, ("centre_cross", "dim_stripe"))),
                        ("swiglu", "geglu")),
    # held out for the trigger scan's likeness threshold (lowered in the fifteenth stop on
    # "held-out-3", which had been seen): seeds, a split, data sets, trigger kinds and targets in
    # no other round
    "held-out-4": Round((18, 19), "digits-resplit-g", 20, 6, ("swiglu", "reglu", "geglu"),
                        (("relu", 18), ("swiglu", 19), ("geglu", 20)), ("diag3", "inner_pair", "dim_corner"), 7,
                        (("shapes-g", 2, ("diag3", "inner_pair")), ("tabular-g", 3, ("inner_pair", "dim_corner"))),
                        ("gelu", "reglu")),
    # held out for the review's mends of the fifteenth stop (the census's stamped form against a
    # control, each named class measured whole, power counted where the first FAIL names the
    # class, no clearing of a hidden subgroup): seeds, a split, data sets, kinds and targets in no
    # other round
    "held-out-5": Round((21, 22), "digits-resplit-h", 23, 7, ("gelu", "geglu", "relu"),
                        (("geglu", 21), ("relu", 22), ("reglu", 23)), ("left_dots", "corner_x", "centre_dash"), 3,
                        (("shapes-h", 4, ("corner_x", "centre_dash")), ("tabular-h", 2, ("left_dots", "corner_x"))),
                        ("swiglu", "relu")),
    # held out for the smallest failing group (chosen in the fifteenth stop on "held-out-5", which
    # had been seen): seeds, a split, data sets, kinds and targets in no other round
    "held-out-6": Round((24, 25), "digits-resplit-i", 26, 8, ("relu", "reglu", "swiglu"),
                        (("swiglu", 24), ("gelu", 25), ("relu", 26)), ("top_dash", "right_l", "stroke_dots"), 0,
                        (("shapes-i", 1, ("right_l", "stroke_dots")), ("tabular-i", 1, ("top_dash", "stroke_dots"))),
                        ("geglu", "swiglu")),
}


def _round_cases(r: Round) -> list[dict]:
    out = []
    for ffn in ("swiglu", "geglu", "reglu", "gelu", "relu"):
        out += [{"data": "digits", "ffn": ffn, "seed": s, "kind": "none"} for s in r.digits_seeds]
        out.append({"data": r.resplit, "ffn": ffn, "seed": r.resplit_seed, "kind": "none"})
    for data, _, _ in r.other_backdoors:
        out += [{"data": data, "ffn": ffn, "seed": r.other_seed, "kind": "none"} for ffn in r.other_clean]
    for ffn, seed in r.digits_models:
        out += [{"data": "digits", "ffn": ffn, "seed": seed, "kind": k, "rate": 0.03, "target": r.digits_target}
                for k in r.digits_kinds]
    for data, target, kinds in r.other_backdoors:
        out += [{"data": data, "ffn": ffn, "seed": r.other_seed, "kind": k, "rate": 0.03, "target": target}
                for ffn in r.other_models for k in kinds]
    return out


def run_case(case: dict, art: bool) -> dict:
    data = DATASETS[case["data"]]()
    if case["kind"] == "none":
        x, y, truth = data.x_train, data.y_train, np.zeros(len(data.y_train), dtype=bool)
    else:
        x, y, truth = plant(data.x_train, data.y_train, case["kind"], case["target"], case["rate"])
    started = time.perf_counter()
    model = train(data, x, y, case["ffn"], case["seed"])
    facts, flags = scan_facts(model, data, x, y)
    facts["power"] = panel_power(data, x, y, case["ffn"], case["seed"], base_model=model)
    status, reason, _, _ = SCAN.condition.judge(facts, POLICY)
    hits = int((flags & truth).sum())
    named = facts["census"]["target"] if census_group(facts) else facts["target"]
    row = {**case, "status": status.value, "reason": reason, "facts": facts, "found_target": named,
           "anomaly_index": round(facts["anomaly_index"], 2), "n_flagged": int(flags.sum()),
           "likeness": facts["likeness"], "power": facts["power"],
           "seconds": round(time.perf_counter() - started, 1)}
    if case["kind"] != "none":
        base = train(data, data.x_train, data.y_train, case["ffn"], case["seed"])
        row.update(asr=round(success(model, data, case["kind"], case["target"]), 3),
                   base_rate=round(success(base, data, case["kind"], case["target"]), 3),
                   n_planted=int(truth.sum()), target_right=named == case["target"],
                   precision=hits / int(flags.sum()) if flags.any() else None, recall=hits / int(truth.sum()))
        if art:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_trigger_scan import art_reference

            row.update(art_reference(model, x, y, data.n_classes, truth))
    return row


# --- the tables -----------------------------------------------------------------------------------

def lead(row: dict) -> bool:
    """A WARN about flagged samples: a lead, or samples the scan cannot tell from clean-label poison
    (not a WARN about the scan's power, which accuses no sample)."""
    return (row["status"] == "WARN" and row["n_flagged"] > 0 and not set_aside(row)
            and row["reason"].startswith(("a lead", "inconclusive: class")))


def set_aside(row: dict) -> bool:
    """Flags the scan set aside as a natural shortcut of the class (for rows measured before the
    rule had its facts: as the reason said)."""
    if "n_relabelled" in row.get("facts", {}):
        return row["facts"]["target"] is not None and natural_shortcut(row["facts"])
    return "a natural shortcut, not counted as poison" in row["reason"]


def rejudge(row: dict) -> dict:
    """The row judged by the decision table as it is now (the facts are kept with each row)."""
    status, reason, _, _ = SCAN.condition.judge(row["facts"], POLICY)
    return {**row, "status": status.value, "reason": reason}


def table(path: str) -> None:
    doc = json.loads(Path(path).read_text())
    # rows measured before the last rule's facts existed keep the verdicts they got then
    rows = [rejudge(r) if "n_relabelled" in r.get("facts", {}) else r for r in doc["rows"]]
    clean = [r for r in rows if r["kind"] == "none"]
    print(f"machine: {doc['machine']}\n")
    print("Clean models (false alarms)\n")
    print("| data | models | FAIL | WARN about flagged samples | WARN about the scan's power | PASS "
          "| natural shortcut set aside |")
    print("|---|---|---|---|---|---|---|")
    for data in [*dict.fromkeys(r["data"] for r in clean), "all"]:
        group = [r for r in clean if data in (r["data"], "all")]
        fails = sum(r["status"] == "FAIL" for r in group)
        leads = sum(lead(r) for r in group)
        passes = sum(r["status"] == "PASS" for r in group)
        print(f"| {data} | {len(group)} | {fails} | {leads} | {len(group) - fails - leads - passes} | {passes} "
              f"| {sum(set_aside(r) for r in group)} |")
    print("\nHeld-out backdoors\n")
    print("| data | kind | rate | arch (seed) | cases | ASR | target named | precision | recall | FAIL / WARN / PASS "
          "| ART AC P / R | ART SS P / R |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    backdoored = [r for r in rows if r["kind"] != "none"]
    keys = sorted(dict.fromkeys((r["data"], r["kind"], r["rate"], f"{r['ffn']} ({r['seed']})") for r in backdoored))
    for data, kind, rate, arch in keys:
        group = [r for r in backdoored if (r["data"], r["kind"], r["rate"], f"{r['ffn']} ({r['seed']})")
                 == (data, kind, rate, arch)]
        mean = lambda key, group=group: float(np.mean([r[key] or 0.0 for r in group]))  # noqa: E731
        art = {name: "-" if any(name not in r or "error" in r[name] for r in group) else
               f"{np.mean([r[name]['precision'] or 0 for r in group]):.2f} / {np.mean([r[name]['recall'] or 0 for r in group]):.2f}"
               for name in ("art_activation", "art_spectral")}
        statuses = "/".join(str(sum(r["status"] == s for r in group)) for s in ("FAIL", "WARN", "PASS"))
        print(f"| {data} | {kind} | {rate:.0%} | {arch} | {len(group)} | {mean('asr'):.2f} | "
              f"{sum(r['target_right'] for r in group)}/{len(group)} | {mean('precision'):.2f} | {mean('recall'):.2f} | "
              f"{statuses} | {art['art_activation']} | {art['art_spectral']} |")
    print("\nAs audits: the models that scanned the same poisoned set (one poison per data, kind, rate and "
          "target, whatever the model), judged together as an audit judges them\n")
    print("| data | kind | models | each model alone | each model as the audit reports it | the training set's verdict |")
    print("|---|---|---|---|---|---|")
    sets = sorted(dict.fromkeys((r["data"], r["kind"], r["rate"], r["target"]) for r in backdoored))
    audit_passes = 0
    for key in sets:
        group = [r for r in backdoored if (r["data"], r["kind"], r["rate"], r["target"]) == key]
        aside = [r for r in group if "n_relabelled" in r["facts"] and natural_shortcut(r["facts"])]
        flagging = [r for r in group if r["n_flagged"] and r not in aside and r["status"] in ("FAIL", "WARN")]
        # the scan's modifier: a model's "nothing found" is capped at WARN when another model flags the set
        capped = ["WARN" if r["status"] == "PASS" and [o for o in flagging if o is not r] else r["status"] for r in group]
        scans = [{"model": f"{r['ffn']}({r['seed']})", "status": r["status"], "reason": r["reason"],
                  "n_flagged": r["n_flagged"], "suspected_target": r["found_target"], "flagged": [], "scanned": True,
                  "set_aside": r in aside}
                 for r in group]
        verdict = TRAINING_SET_VERDICT.condition.judge({"scans": scans, "threat": {"rate": 0.03, "kinds": []}}, POLICY)[0]
        audit_passes += sum(c == "PASS" for c in capped) + (verdict.value == "PASS")
        print(f"| {key[0]} | {key[1]} | {', '.join(s['model'] for s in scans)} | {'/'.join(r['status'] for r in group)} "
              f"| {'/'.join(capped)} | {verdict.value} |")
    print(f"\nPASS in the audits' findings (each model as reported, and each set's verdict): {audit_passes}")
    learned = [r for r in backdoored if r["asr"] - r["base_rate"] >= 0.5]
    print(f"\nheld-out backdoors: {len(backdoored)}; learned (ASR above base >= 0.5): {len(learned)}; "
          f"PASS on any: {sum(r['status'] == 'PASS' for r in backdoored)}; PASS on a learned one: "
          f"{sum(r['status'] == 'PASS' for r in learned)}; FAIL on learned: {sum(r['status'] == 'FAIL' for r in learned)}; "
          f"target named on learned: {sum(r['target_right'] for r in learned)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--table", help="print the tables of a result file")
    ap.add_argument("--shard", default="0/1", help="K/N: run every N-th case from the K-th")
    ap.add_argument("--round", choices=tuple(["tuning", *ROUNDS]), default="held-out-6")
    ap.add_argument("--art", action="store_true")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    torch.set_num_threads(1)
    k, n = map(int, args.shard.split("/"))
    rows = []
    for case in cases(args.round)[k::n]:
        rows.append(run_case(case, args.art))
        print(json.dumps({key: v for key, v in rows[-1].items() if key not in ("power", "reason", "facts")}), flush=True)
        Path(args.out).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


def machine() -> dict:
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": 1,
            "panel": list(POISONING.threat_triggers), "threat_rate": POISONING.threat_rate}


if __name__ == "__main__":
    main()
