"""Per-model measurements over all training seeds, memoised per process.

Each function returns (seeds x examples) matrices, the shape `stats` works on. A comparison test
asks for the same measurements as the per-model tests and gets the memoised result when both run
in the same process.
"""

from __future__ import annotations

import numpy as np

from .checks.adversarial import input_gradient_stats, output_stats, run_attack, worst_case
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


def adversarial(audit: AuditSession, name: str) -> dict:
    """Every configured attack at the main budget, the PGD budget curve, the extra runs the
    sanity checks need, and gradient and output statistics; stacked over seeds."""
    def compute():
        cfg, data = audit.config.adversarial, audit.data
        x, y = data.x_test[: cfg["n_examples"]], data.y_test[: cfg["n_examples"]]
        n_classes = data.n_classes
        seeds = []
        for m in audit.zoo.models(name):
            seed = m.seed or 0
            run = lambda attack, **kw: run_attack(m.module, attack, x, y, cfg, n_classes, seed, **kw)
            per_attack = {a: run(a) for a in cfg["attacks"]}
            pgd_main = per_attack.get("pgd") or run("pgd")
            curve = {eps: (pgd_main if eps == cfg["eps"] else run("pgd", eps=eps))["robust"]
                     for eps in sorted(set(cfg["budgets"]) | {cfg["eps"]})}
            clean = pgd_main["clean"]
            robust, broken_by = worst_case({a: r["robust"] for a, r in per_attack.items()}, clean)
            seeds.append({
                "clean": clean, "worst": robust, "broken_by": broken_by,
                "per_attack": {a: r["robust"] for a, r in per_attack.items()},
                "costs": [r["cost"] for r in per_attack.values()],
                "curve": curve,
                "fgsm": (per_attack.get("fgsm") or run("fgsm"))["robust"],
                "pgd": pgd_main["robust"],
                "pgd_double": run("pgd", steps=2 * cfg["steps"])["robust"],
                "large": run("pgd", eps=cfg["large_eps"])["robust"],
                "square": per_attack["square"]["robust"] if "square" in per_attack else None,
                "gradients": input_gradient_stats(m.module, x, y),
                "outputs": output_stats(m.module, x),
            })
        stack = lambda key: np.stack([s[key] for s in seeds])
        return {
            "clean": stack("clean"), "worst": stack("worst"), "fgsm": stack("fgsm"), "pgd": stack("pgd"),
            "pgd_double": stack("pgd_double"), "large": stack("large"),
            "square": None if seeds[0]["square"] is None else stack("square"),
            "per_attack": {a: np.stack([s["per_attack"][a] for s in seeds]) for a in cfg["attacks"]},
            "curve": {eps: np.stack([s["curve"][eps] for s in seeds]) for eps in seeds[0]["curve"]},
            "broken_by": [s["broken_by"] for s in seeds], "costs": [s["costs"] for s in seeds],
            "gradients": [s["gradients"] for s in seeds], "outputs": [s["outputs"] for s in seeds],
            "n_classes": n_classes,
        }
    return audit.memo(("adversarial", name), compute)


def pgd_examples(audit: AuditSession, name: str) -> list:
    """PGD adversarial examples crafted on each seed's model (for transfer attacks)."""
    def compute():
        cfg, data = audit.config.adversarial, audit.data
        x, y = data.x_test[: cfg["n_examples"]], data.y_test[: cfg["n_examples"]]
        return [run_attack(m.module, "pgd", x, y, cfg, data.n_classes, m.seed or 0,
                           return_examples=True)["examples"] for m in audit.zoo.models(name)]
    return audit.memo(("pgd_examples", name), compute)


def transfer(audit: AuditSession, source: str, target: str) -> np.ndarray:
    """Target's per-example correctness on examples crafted on the source (seed k onto seed k)."""
    cfg, data = audit.config.adversarial, audit.data
    y = data.y_test[: cfg["n_examples"]]
    rows = []
    for examples, m in zip(pgd_examples(audit, source), audit.zoo.models(target)):
        rows.append((predict_logits(m.module, examples, audit.device).argmax(1) == y).numpy())
    return np.stack(rows)


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
