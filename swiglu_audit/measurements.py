"""Per-model measurements over all training seeds, memoised per process.

Each function returns (seeds x examples) matrices, the shape `stats` works on. A comparison test
asks for the same measurements as the per-model tests and gets the memoised result when both run
in the same process.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from .cache import cache_key
from .checks.adversarial import input_gradient_stats, output_stats, run_attack, worst_case
from .checks.numerical import half_parity, state_difference
from .session import AuditSession
from .train import Recipe, predict_logits, train_model


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

    from . import cache
    from .checks import adversarial as adversarial_module

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


def half_precision(audit: AuditSession, name: str, dtype: str) -> dict:
    def compute():
        x = audit.data.x_test[: audit.config.numerical["n_examples"]]
        runs = [half_parity(m.module, x, dtype) for m in audit.zoo.models(name)]
        return {
            "flips": np.stack([r["flips"] for r in runs]),
            "max_logit_deviation": max(r["max_logit_deviation"] for r in runs),
            "finite": all(r["finite"] for r in runs),
            "ffn_absmax": max(r["ffn_absmax"] for r in runs),
            "headroom": min(r["headroom"] for r in runs),
        }
    return audit.memo(("half", name, dtype), compute)


def op_implementation(audit: AuditSession, impl_name: str):
    """The SwiGLU implementations under test: the eager reference op, its torch.compile'd form,
    and any the user registered under [tool.swiglu_audit.numerical.implementations]."""
    from .errors import ConfigError
    from .imports import load_callable
    from .nn import swiglu

    if impl_name == "eager":
        return swiglu
    if impl_name == "compiled":
        return audit.memo(("compiled-op",), lambda: torch.compile(swiglu, dynamic=True))
    path = audit.config.numerical["implementations"][impl_name]
    return load_callable(path, f"[tool.swiglu_audit.numerical.implementations] {impl_name}", ConfigError)


def implementation_names(config) -> list[str]:
    return ["eager"] + (["compiled"] if config.numerical["compile"] else []) + sorted(config.numerical["implementations"])


def determinism(audit: AuditSession, name: str) -> dict:
    """Train the first seed twice, briefly, from scratch; compare weights and outputs."""
    def compute():
        spec, cfg = audit.zoo.spec(name), audit.config
        probe = audit.data.x_val[: cfg.numerical["golden_probe"]]
        if spec.weights:  # pretrained: only the forward pass can be checked
            m = audit.zoo.models(name)[0].module
            a, b = predict_logits(m, probe, audit.device), predict_logits(m, probe, audit.device)
            return {"trained": False, "weight_diff": 0.0, "weight_where": None,
                    "output_diff": float((a - b).abs().max())}
        recipe = Recipe(**{**cfg.training, "epochs": cfg.numerical["determinism_epochs"]})
        seed = cfg.seeds[0]
        states, outputs = [], []
        for _ in range(2):
            torch.manual_seed(seed)
            model = audit.zoo.instantiate(spec).to(audit.device)
            train_model(model, audit.data.x_train, audit.data.y_train, recipe, seed, audit.device)
            states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
            outputs.append(predict_logits(model, probe, audit.device))
        diff, where = state_difference(states[0], states[1])
        return {"trained": True, "weight_diff": diff, "weight_where": where,
                "output_diff": float((outputs[0] - outputs[1]).abs().max())}
    return audit.memo(("determinism", name), compute)


def golden_logits(audit: AuditSession, name: str, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probe inputs, logits of the first seed's model on them) at float32 or bfloat16 autocast."""
    probe = audit.data.x_val[: audit.config.numerical["golden_probe"]]
    model = audit.zoo.models(name)[0].module
    if dtype == "float32":
        return probe, predict_logits(model, probe, audit.device)
    with torch.no_grad(), torch.autocast(audit.device.type, dtype=torch.bfloat16):
        return probe, model.eval()(probe.to(audit.device)).float().cpu()


def n_parameters(audit: AuditSession, name: str) -> int:
    return audit.zoo.models(name)[0].n_parameters
