"""Cross-check of the privacy suite's membership inference against IBM ART on the same models and
records.

For each model and seed of the standard profile (the MLP family by default): the suite's own
figures (RMIA and the loss threshold, `measure.privacy.membership`, on all its records), and on
one half of those records (members and non-members split in two at random, the other half
training ART's attack model): ART's `MembershipInferenceBlackBox` on the loss (a random-forest
attack model), ART's `MembershipInferenceBlackBoxRuleBased` (member when classified right), and
the suite's loss threshold on the same half. ART implements neither RMIA nor LiRA, so the like-
for-like check is on the loss: the same AUROC within sampling error, and the same ordering of the
models. RMIA's figures stand beside it.

    PYTHONPATH=<ART 1.20> python bench/bench_privacy.py --cache-dir CACHE --out bench/privacy-art.json
    PYTHONPATH=<ART 1.20> python bench/bench_privacy.py --cache-dir CACHE --contrast --out bench/privacy-art-contrast.json

The zoo's MLPs on digits all leak about as little (AUROC 0.53-0.60), within sampling error of each
other, so no ordering of them means anything; `--contrast` runs the user-contract test's pair,
whose leaks differ by far more.

ART: `pip install --target DIR adversarial-robustness-toolbox six tqdm --no-deps` (its own pins
would replace this project's numpy and scipy).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from swiglu_audit.config import build_config  # noqa: E402
from swiglu_audit.measure import privacy as measure  # noqa: E402
from swiglu_audit.methods.privacy import auroc, tpr_at_fpr  # noqa: E402
from swiglu_audit.session import AuditSession  # noqa: E402
from swiglu_audit.training.train import predict_logits  # noqa: E402


def _halves(is_member: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(attack-training positions, evaluation positions): members and non-members each split in two."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for flag in (True, False):
        idx = rng.permutation(np.flatnonzero(is_member == flag))
        fit.append(idx[: len(idx) // 2])
        held.append(idx[len(idx) // 2:])
    return np.concatenate(fit), np.concatenate(held)


def _art_attacks(model, x: np.ndarray, y: np.ndarray, is_member: np.ndarray, n_classes: int) -> dict:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model.eval(), loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:],
                                   nb_classes=n_classes, clip_values=(0.0, 1.0))
    fit, held = _halves(is_member)
    attack = MembershipInferenceBlackBox(classifier, input_type="loss", attack_model_type="rf")
    members_fit, non_fit = fit[is_member[fit]], fit[~is_member[fit]]
    attack.fit(x[members_fit], y[members_fit], x[non_fit], y[non_fit])
    probability = attack.infer(x[held], y[held], probabilities=True)[:, -1]
    rule = MembershipInferenceBlackBoxRuleBased(classifier).infer(x[held], y[held]).astype(float).ravel()
    m = is_member[held]
    return {"held": held,
            "art_blackbox_loss": {"auroc": auroc(probability[m], probability[~m]),
                                  "tpr_at_0.01": tpr_at_fpr(probability[m], probability[~m], 0.01)},
            "art_rule_based": {"tpr": float(rule[m].mean()), "fpr": float(rule[~m].mean())}}


def _contrast_table(folder: Path) -> dict:
    """The user-contract test's pair (tests/test_privacy.py): noisy-label tabular data, a model that
    memorises it and one that is regularised; models whose leaks differ by far more than sampling
    error, so that an ordering means something."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_privacy import NOISY_DATA, PRIVACY_MODELS

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noisydata.py").write_text(NOISY_DATA)
    (folder / "privacymodels.py").write_text(PRIVACY_MODELS)
    sys.path.insert(0, str(folder))
    return {"dataset": "noisydata:load", "training": {"epochs": 100, "weight_decay": 0.0},
            "privacy": {"reference_models": 4},
            "models": [{"name": "memoriser", "factory": "privacymodels:make_memoriser", "role": "candidate"},
                       {"name": "regularised", "factory": "privacymodels:make_regularised"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="swiglu-mlp,geglu-mlp,reglu-mlp,gelu-mlp,relu-mlp")
    parser.add_argument("--contrast", action="store_true",
                        help="the user-contract test's memoriser and regularised model instead of the zoo")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import art

    table = _contrast_table(Path(args.cache_dir) / "contrast-project") if args.contrast else {}
    if args.contrast:
        args.models = "memoriser,regularised"
    config = build_config(table, profile="standard", cache_dir=args.cache_dir, seeds=args.seeds)
    audit = AuditSession(config)
    x_all, y_all, _ = measure.population(audit)
    positions, is_member = measure.targets(audit)
    x, y = x_all[torch.from_numpy(positions)], y_all[torch.from_numpy(positions)]
    rows = []
    for name in args.models.split(","):
        started = time.perf_counter()
        suite = measure.membership(audit, name)
        for k, trained in enumerate(audit.zoo.models(name)):
            art_figures = _art_attacks(trained.module, x.numpy(), y.numpy(), is_member, audit.data.n_classes)
            held = art_figures.pop("held")
            p = torch.softmax(predict_logits(trained.module, x, audit.device), 1).gather(1, y[:, None])[:, 0].numpy()
            m = is_member[held]
            rows.append({
                "model": name, "seed": trained.seed,
                "suite_rmia_all": {key: float(suite["rmia"][key][k]) for key in ("auroc", "tpr_at_0.01")},
                "suite_loss_all": {key: float(suite["loss"][key][k]) for key in ("auroc", "tpr_at_0.01")},
                "suite_loss_held": {"auroc": auroc(p[held][m], p[held][~m]),
                                    "tpr_at_0.01": tpr_at_fpr(p[held][m], p[held][~m], 0.01)},
                **art_figures, "n_held": int(len(held)),
            })
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    means = {name: {key: float(np.mean([r[src]["auroc"] for r in rs]))
                    for key, src in (("suite_loss_held", "suite_loss_held"), ("art_blackbox_loss", "art_blackbox_loss"),
                                     ("suite_rmia_all", "suite_rmia_all"))} for name, rs in by_model.items()}
    order = {key: sorted(means, key=lambda n: means[n][key]) for key in ("suite_loss_held", "art_blackbox_loss", "suite_rmia_all")}
    Path(args.out).write_text(json.dumps({
        "machine": platform.platform(), "torch": torch.__version__, "art": art.__version__,
        "profile": "standard", "seeds": args.seeds, "rows": rows, "mean_auroc_by_model": means,
        "ordering_low_to_high": order}, indent=1))
    for name, v in means.items():
        print(f"{name:12} loss(suite, held) {v['suite_loss_held']:.3f}  ART black-box(loss) {v['art_blackbox_loss']:.3f}  "
              f"RMIA(suite, all) {v['suite_rmia_all']:.3f}")
    print("ordering:", json.dumps(order))


if __name__ == "__main__":
    main()
