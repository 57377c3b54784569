"""Per-model measurements over all training seeds, memoised per process.

Each function returns (seeds x examples) matrices, the shape `stats` works on. A comparison test
asks for the same measurements as the per-model tests and gets the memoised result when both run
in the same process.
"""

from __future__ import annotations

import numpy as np

from .checks.adversarial import pgd_correct
from .checks.numerical import fp16_parity
from .checks.ood import far_ood_set, msp_scores
from .checks.poisoning import flip_labels
from .session import AuditSession
from .train import predict_logits

POISON_SEED = 0  # one poisoned training set, shared by every architecture and training seed


def clean_correct(audit: AuditSession, name: str) -> np.ndarray:
    def compute():
        data = audit.data
        rows = [(predict_logits(m.module, data.x_test, audit.device).argmax(1) == data.y_test).numpy()
                for m in audit.zoo.models(name)]
        return np.stack(rows)
    return audit.memo(("clean", name), compute)


def pgd(audit: AuditSession, name: str) -> dict:
    def compute():
        cfg, data = audit.config.adversarial, audit.data
        x, y = data.x_test[: cfg["n_examples"]], data.y_test[: cfg["n_examples"]]
        clean, robust, costs = [], [], []
        for m in audit.zoo.models(name):
            c, r, cost = pgd_correct(m.module, x, y, cfg["eps"], cfg["steps"], seed=m.seed or 0)
            clean.append(c)
            robust.append(r)
            costs.append(cost)
        return {"clean": np.stack(clean), "robust": np.stack(robust), "costs": costs}
    return audit.memo(("pgd", name), compute)


def label_flip(audit: AuditSession, name: str) -> dict:
    def compute():
        data, rate = audit.data, audit.config.poisoning["flip_rate"]
        poisoned_labels, mask = flip_labels(data.y_train, rate, data.n_classes, POISON_SEED)
        poisoned = audit.zoo.models(name, labels=poisoned_labels, tag=f"labelflip-{rate}-{POISON_SEED}")
        rows = [(predict_logits(m.module, data.x_test, audit.device).argmax(1) == data.y_test).numpy()
                for m in poisoned]
        return {"clean": clean_correct(audit, name), "poisoned": np.stack(rows), "rate": rate,
                "n_flipped": int(mask.sum())}
    return audit.memo(("label_flip", name), compute)


def far_ood(audit: AuditSession, name: str) -> dict:
    def compute():
        data, n = audit.data, audit.config.ood["n_examples"]
        x_in = data.x_test[:n]
        x_out = far_ood_set(len(x_in), data.input_shape, seed=0)
        s_in, s_out = [], []
        for m in audit.zoo.models(name):
            s_in.append(msp_scores(predict_logits(m.module, x_in, audit.device)))
            s_out.append(msp_scores(predict_logits(m.module, x_out, audit.device)))
        return {"in": np.stack(s_in), "out": np.stack(s_out)}
    return audit.memo(("far_ood", name), compute)


def half_precision(audit: AuditSession, name: str) -> dict:
    def compute():
        x = audit.data.x_test[: audit.config.numerical["n_examples"]]
        runs = [fp16_parity(m.module, x) for m in audit.zoo.models(name)]
        return {
            "flips": np.stack([r["flips"] for r in runs]),
            "max_logit_deviation": max(r["max_logit_deviation"] for r in runs),
            "finite": all(r["finite"] for r in runs),
            "ffn_absmax": max(r["ffn_absmax"] for r in runs),
            "headroom": min(r["headroom"] for r in runs),
        }
    return audit.memo(("fp16", name), compute)


def n_parameters(audit: AuditSession, name: str) -> int:
    return audit.zoo.models(name)[0].n_parameters
