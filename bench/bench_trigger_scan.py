"""Planted backdoors the training-set scan must find: trigger kinds x positions x targets x rates.

Each case plants one backdoor in scikit-learn's digits training split (relabelling `rate` of the
other classes' samples to the target, except the clean-label kind, which stamps target-class
samples and keeps their labels), trains one model of the built-in family on it (seed 0, the
standard recipe), runs `methods.backdoor_scan.scan` on that training set, and scores its flags
against the planted samples. Clean cases (no backdoor) measure false alarms.

    python bench/bench_trigger_scan.py --family mlp --out bench/trigger-scan-mlp.json
    python bench/bench_trigger_scan.py --family vit --quick --out bench/trigger-scan-vit.json

With `--art`, IBM ART's ActivationDefence and SpectralSignatureDefense run on every backdoored
case, out of the box, as the reference. Clean models of several seeds measure false targets.

Trigger kinds: a 2x2 corner patch, a 2x2 centre patch, a 3x3 checkerboard, blended noise (20%
of a fixed noise image over the whole input), a sparse pattern (two single pixels), and the
clean-label variant of the corner patch. Positions (for the local kinds): three places.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from swiglu_audit.methods.backdoor_scan import scan
from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.features import penultimate_features
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.train import Recipe, train_model

POSITIONS = {"top_left": (0, 0), "bottom_right": (5, 5), "middle_left": (3, 0)}
CHECKER = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
NOISE = torch.from_numpy(np.random.default_rng(99).random((1, 8, 8))).float()


def stamp(x: torch.Tensor, kind: str, position: tuple[int, int]) -> torch.Tensor:
    r, c = position
    out = x.clone()
    if kind in ("corner_patch", "clean_label"):
        out[:, :, r:r + 2, c:c + 2] = 1.0
    elif kind == "centre_patch":
        out[:, :, 3:5, 3:5] = 1.0
    elif kind == "checkerboard":
        out[:, 0, r:r + 3, c:c + 3] = CHECKER
    elif kind == "blend":
        out = 0.8 * out + 0.2 * NOISE
    elif kind == "sparse":
        out[:, 0, r, c] = 1.0
        out[:, 0, (r + 3) % 8, (c + 5) % 8] = 1.0
    return out


def plant(data, kind: str, position, target: int, rate: float, seed: int = 0):
    x, y = data.x_train.clone(), data.y_train.clone()
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(y.numpy() == target) if kind == "clean_label" else np.flatnonzero(y.numpy() != target)
    idx = rng.choice(pool, min(len(pool), int(round(rate * len(y)))), replace=False)
    x[idx] = stamp(x[idx], kind, position)
    y[idx] = target
    truth = np.zeros(len(y), dtype=bool)
    truth[idx] = True
    return x, y, truth


def art_reference(model, x: torch.Tensor, y: torch.Tensor, n_classes: int, truth: np.ndarray) -> dict:
    """IBM ART's two training-set detectors out of the box, on the same model and set: the
    reference the issue names. ART is optional (not a dependency of the project): `--art` needs it
    importable (e.g. `pip install --target DIR adversarial-robustness-toolbox six tqdm` and DIR on
    PYTHONPATH)."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=n_classes, clip_values=(0.0, 1.0))
    x_np = x.numpy()
    y_hot = np.eye(n_classes, dtype=np.float32)[y.numpy()]
    out = {}
    for name, make in (("art_activation", lambda: ActivationDefence(classifier, x_np, y_hot)),
                       ("art_spectral", lambda: SpectralSignatureDefense(classifier, x_np, y_hot))):
        try:
            _, is_clean = make().detect_poison()
        except Exception as error:  # recorded, not hidden: the reference did not run on this model
            out[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        out[name] = score_flags(np.asarray(is_clean) == 0, truth)
    return out


def score_flags(flags: np.ndarray, truth: np.ndarray) -> dict:
    hits = int((flags & truth).sum())
    return {"n_flagged": int(flags.sum()),
            "precision": hits / int(flags.sum()) if flags.any() else None,
            "recall": hits / int(truth.sum()) if truth.any() else None}


def auroc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores)) if truth.any() and not truth.all() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="mlp")
    ap.add_argument("--quick", action="store_true", help="one position and target per kind (for the slow ViT)")
    ap.add_argument("--rates", default="0.01,0.03,0.05,0.10", help="poison rates, comma-separated")
    ap.add_argument("--kinds", default="corner_patch,centre_patch,checkerboard,blend,sparse,clean_label")
    ap.add_argument("--clean-seeds", type=int, default=4, help="clean models (seeds 0..N-1) that measure false alarms")
    ap.add_argument("--art", action="store_true", help="also run IBM ART's two detectors on each case")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_digits_data()
    device = torch.device("cpu")
    rates = [float(r) for r in args.rates.split(",")]
    cases = [("none", "-", 0, 0.0, seed) for seed in range(args.clean_seeds)]
    for kind in args.kinds.split(","):
        positions = ["-"] if kind in ("centre_patch", "blend") else list(POSITIONS)
        targets = [3, 7]
        if args.quick:
            positions, targets = positions[:1], targets[:1]
        cases += [(kind, p, t, r, 0) for p, t, r in itertools.product(positions, targets, rates)]
    rows = []
    for kind, position, target, rate, seed in cases:
        if kind == "none":
            x, y, truth = data.x_train, data.y_train, np.zeros(len(data.y_train), dtype=bool)
        else:
            x, y, truth = plant(data, kind, POSITIONS.get(position, (0, 0)), target, rate)
        torch.manual_seed(seed)
        model = build_model(ModelConfig(family=args.family, ffn="swiglu"))
        train_model(model, x, y, Recipe(epochs=30), seed, device, data.x_val, data.y_val)
        model.eval()
        started = time.perf_counter()
        result = scan(model, x, y, data.n_classes, device,
                      features=penultimate_features(model, x, device).numpy())
        seconds = time.perf_counter() - started
        with torch.no_grad():  # did the model learn the backdoor at all? (ASR on triggered test inputs)
            others = data.x_test[data.y_test != target]
            asr = float((model(stamp(others, kind, POSITIONS.get(position, (0, 0)))).argmax(1) == target).float().mean()) \
                if kind != "none" else None
        row = {"kind": kind, "position": position, "target": target if kind != "none" else None, "rate": rate,
               "seed": seed, "n_planted": int(truth.sum()), "asr": asr, "found_target": result.target,
               "target_right": (result.target == target) if kind != "none" else result.target is None,
               **score_flags(result.flags, truth), "auroc": auroc(result.scores, truth),
               "max_anomaly_index": max(result.anomaly_index), "seconds": round(seconds, 2)}
        if args.art and kind != "none":
            row.update(art_reference(model, x, y, data.n_classes, truth))
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    backdoored = [r for r in rows if r["kind"] != "none"]
    summary = {}
    for label, sel in (("rate 1%", lambda r: r["rate"] == 0.01), ("rates 3-10%", lambda r: r["rate"] >= 0.03)):
        group = [r for r in backdoored if sel(r)]
        if group:
            summary[label] = {
                "cases": len(group),
                "target_right": sum(r["target_right"] for r in group) / len(group),
                "precision_median": float(np.median([r["precision"] or 0.0 for r in group])),
                "recall_median": float(np.median([r["recall"] or 0.0 for r in group])),
                "precision_and_recall_at_least_0.8": sum((r["precision"] or 0) >= 0.8 and (r["recall"] or 0) >= 0.8
                                                          for r in group) / len(group)}
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
           "family": args.family, "rows": rows, "summary": summary,
           "clean_false_target": [r["found_target"] for r in rows if r["kind"] == "none"]}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
