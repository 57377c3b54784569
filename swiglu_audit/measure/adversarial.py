"""Adversarial measurements per model, over all training seeds, memoised per process.

Each function returns (seeds x examples) matrices, the shape `stats` works on. A comparison test
asks for the same measurements as the per-model tests and gets the memoised result when both run
in the same process.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cache import cache_key
from ..checks.adversarial import input_gradient_stats, output_stats, run_attack, worst_case
from ..train import predict_logits

if TYPE_CHECKING:  # the session is passed in; this layer never imports it at run time
    from ..session import AuditSession


def clean_correct(audit: AuditSession, name: str) -> np.ndarray:
    def compute():
        data = audit.data
        rows = [(predict_logits(m.module, data.x_test, audit.device).argmax(1) == data.y_test).numpy()
                for m in audit.zoo.models(name)]
        return np.stack(rows)
    return audit.memo(("clean", name), compute)


def _code_digest() -> str:
    """Attack results are cached across runs; see `cache.code_digest`."""
    from importlib.metadata import version

    from .. import cache
    from ..checks import adversarial as adversarial_module

    return cache.code_digest(sys.modules[__name__], adversarial_module) + f" torchattacks {version('torchattacks')}"


CODE_DIGEST = _code_digest()


def _attack_one_seed(audit: AuditSession, model, x, y) -> dict:
    cfg, n_classes = audit.config.adversarial, audit.data.n_classes
    seed = model.seed or 0
    run = lambda attack, **kw: run_attack(model.module, attack, x, y, cfg, n_classes, seed, **kw)
    per_attack = {a: run(a, return_examples=(a == "pgd")) for a in cfg["attacks"]}
    pgd_main = per_attack.get("pgd") or run("pgd", return_examples=True)
    curve = {eps: (pgd_main if eps == cfg["eps"] else run("pgd", eps=eps))["robust"]
             for eps in sorted(set(cfg["budgets"]) | {cfg["eps"]})}
    robust, broken_by, who = worst_case({a: r["robust"] for a, r in per_attack.items()}, pgd_main["clean"])
    return {
        "clean": pgd_main["clean"], "worst": robust, "broken_by": broken_by, "broken_by_example": who,
        "per_attack": {a: r["robust"] for a, r in per_attack.items()},
        "costs": [r["cost"] for r in per_attack.values()], "curve": curve,
        "fgsm": (per_attack.get("fgsm") or run("fgsm"))["robust"], "pgd": pgd_main["robust"],
        "pgd_double": run("pgd", steps=2 * cfg["steps"])["robust"],
        "large": run("pgd", eps=cfg["large_eps"])["robust"],
        "square": per_attack["square"]["robust"] if "square" in per_attack else None,
        "gradients": input_gradient_stats(model.module, x, y), "outputs": output_stats(model.module, x),
        "pgd_examples": pgd_main["examples"],
    }


def adversarial(audit: AuditSession, name: str) -> dict:
    """Every configured attack at the main budget, the PGD budget curve, the extra runs the
    sanity checks need, gradient and output statistics, and the PGD examples (for transfer);
    stacked over seeds. Cached on disk like checkpoints: xdist workers and later runs share it."""
    def compute_and_pack():
        cfg, data = audit.config.adversarial, audit.data
        x, y = data.x_test[: cfg["n_examples"]], data.y_test[: cfg["n_examples"]]
        seeds = [_attack_one_seed(audit, m, x, y) for m in audit.zoo.models(name)]
        stack = lambda key: torch.from_numpy(np.stack([s[key] for s in seeds]))
        tensors = {k: stack(k) for k in ("clean", "worst", "fgsm", "pgd", "pgd_double", "large")}
        if seeds[0]["square"] is not None:
            tensors["square"] = stack("square")
        for a in cfg["attacks"]:
            tensors[f"per_attack/{a}"] = torch.from_numpy(np.stack([s["per_attack"][a] for s in seeds]))
        for eps in seeds[0]["curve"]:
            tensors[f"curve/{eps!r}"] = torch.from_numpy(np.stack([s["curve"][eps] for s in seeds]))
        tensors["pgd_examples"] = torch.stack([s["pgd_examples"] for s in seeds])
        record = {k: [s[k] for s in seeds]
                  for k in ("broken_by", "broken_by_example", "costs", "gradients", "outputs")}
        return tensors, {**record, "n_classes": data.n_classes}

    def compute():
        key = cache_key({"kind": "adversarial", "models": [m.key for m in audit.zoo.models(name)],
                         "cfg": audit.config.adversarial, "data": audit.data.fingerprint,
                         "device": audit.device.type, "code": CODE_DIGEST})
        tensors, record, _ = audit.cache.get_or_create(key, compute_and_pack, kind="result")
        arr = lambda k: tensors[k].numpy()
        return {
            **{k: arr(k) for k in ("clean", "worst", "fgsm", "pgd", "pgd_double", "large")},
            "square": arr("square") if "square" in tensors else None,
            "per_attack": {k.split("/", 1)[1]: arr(k) for k in tensors if k.startswith("per_attack/")},
            "curve": {float(k.split("/", 1)[1]): arr(k) for k in tensors if k.startswith("curve/")},
            "pgd_examples": list(tensors["pgd_examples"]),
            **record,
        }
    return audit.memo(("adversarial", name), compute)


def transfer(audit: AuditSession, source: str, target: str) -> np.ndarray:
    """Target's per-example correctness on PGD examples crafted on the source (seed k onto seed k)."""
    cfg, data = audit.config.adversarial, audit.data
    y = data.y_test[: cfg["n_examples"]]
    rows = []
    for examples, m in zip(adversarial(audit, source)["pgd_examples"], audit.zoo.models(target)):
        rows.append((predict_logits(m.module, examples, audit.device).argmax(1) == y).numpy())
    return np.stack(rows)


def prefetch(audit: AuditSession, name: str) -> None:
    """Every cached adversarial measurement of `name`: the xdist prefetch."""
    adversarial(audit, name)
