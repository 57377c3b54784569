"""Adversarial measurements per model, over all training seeds, memoised per process.

Each function returns (seeds x examples) matrices, the shape `stats` works on. A comparison test
asks for the same measurements as the per-model tests and gets the memoised result when both run
in the same process.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..checks.sanity import masking_failures
from ..methods.attack_registry import ATTACKS, EVERY_INPUT, THREAT_MODELS, AttackParams, attack_cost, attack_order, threat_attacks
from ..methods.attacks import (
    ExpectationOverRandomness,
    StraightThrough,
    input_gradient_stats,
    output_stats,
    run_attack,
    worst_case,
)
from ..methods.stacked_attacks import STACKABLE, attack_members
from ..methods.stacked_members import NotStackable, StackedMembers, stack_for_attack
from ..training.cache import cache_key
from ..training.planned import Part, Work
from .predictions import predicted_as

if TYPE_CHECKING:  # the session is passed in; this layer never imports it at run time
    from ..session import AuditSession


def clean_correct(audit: AuditSession, name: str) -> np.ndarray:
    def compute():
        return predicted_as(audit, audit.zoo.models(name), audit.data.x_test, audit.data.y_test)
    return audit.memo(("clean", name), compute)


def _code_digest() -> str:
    """Attack results are cached across runs; see `cache.code_digest`."""
    from importlib.metadata import version

    from ..methods import attack_registry, attacks, stacked_attacks, stacked_members
    from ..training import cache, evaluation_rows

    digest = cache.code_digest(sys.modules[__name__], attacks, attack_registry, stacked_attacks, stacked_members,
                               evaluation_rows)  # which test rows are attacked
    return digest + f" torchattacks {version('torchattacks')}"


CODE_DIGEST = _code_digest()


def l2_budgets(eps_l2: float) -> list[float]:
    return [round(eps_l2 * f, 6) for f in (0.5, 1.0, 2.0)]


def planned_passes(config, n_classes: int) -> tuple[int, int]:
    """(input-gradient passes, forward passes) over the attack set per model and seed, as
    `_attack_seeds` runs them: every configured attack at its registry cost; PGD and FGSM where
    the sanity checks need them and they are not configured; the Linf budget curve (the main budget
    reuses PGD's run); the L2 curve where PGD-L2 is configured; PGD at doubled iterations and at
    the large budget; one input-gradient pass for the gradient statistics (what the plan counts).
    A cascaded attack (`attack_order`) runs on the inputs earlier attacks left, which no plan knows
    before they ran: it is counted on every input, so the estimate is an upper bound."""
    cfg = config.adversarial
    params = AttackParams.of(cfg)
    costs = [attack_cost(a, params, n_classes) for a in cfg.attacks]
    grads, forwards = sum(c[0] for c in costs), sum(c[1] for c in costs)
    pgd = attack_cost("pgd", params, n_classes)[0]
    grads += (0 if "pgd" in cfg.attacks else pgd) + (0 if "fgsm" in cfg.attacks else attack_cost("fgsm", params, n_classes)[0])
    grads += pgd * len(set(cfg.budgets) - {cfg.eps})
    if "pgd_l2" in cfg.attacks:
        grads += attack_cost("pgd_l2", params, n_classes)[0] * len(set(l2_budgets(cfg.eps_l2)) - {cfg.eps_l2})
    grads += 2 * pgd + pgd + 1  # doubled iterations, the large budget, the gradient statistics
    return grads, forwards


def planned_work(audit: AuditSession, name: str) -> Work:
    """The adversarial job's declared work on one model: every seed attacked (`planned_passes`;
    a pretrained model has one "seed")."""
    grads, forwards = planned_passes(audit.config, audit.data.n_classes)
    seeds = len(audit.zoo.trained_seeds(name))
    return Work(attack_gradient_passes=grads * seeds, attack_forward_passes=forwards * seeds)


def attacks_stack(audit: AuditSession, name: str) -> bool:
    """Whether `name`'s seeds are attacked as one stacked attack: where its trainings stack (the
    zoo's timed choice, which a job graph's workers follow) and every configured attack can run
    stacked (not the full profile's AutoAttack and CW-L2: their seeds are attacked side by side).
    Every way of running the audit asks this, so they attack the same way."""
    return set(audit.config.adversarial.attacks) <= STACKABLE and audit.zoo.stacks(name)


def _stacked(audit: AuditSession, name: str, models: list, x: torch.Tensor) -> StackedMembers | None:
    """The seeds' models as one stacked module where they are attacked stacked (`attacks_stack`)
    and run stacked (`stack_for_attack`'s trial); None: attack them one by one."""
    if len(models) < 2 or not attacks_stack(audit, name):
        return None
    try:
        return stack_for_attack([m.module for m in models], x[:8])
    except NotStackable:
        return None


def _attack_seeds(audit: AuditSession, name: str, models: list, x, y) -> list[dict]:
    """Every configured attack, the budget curves and the sanity checks' extra runs on each of
    `models` (the seeds of `name`): one attack on all of them stacked where they stack
    (`methods/stacked_attacks.py`), else one by one, each under its own seed."""
    cfg, n_classes = audit.config.adversarial, audit.data.n_classes
    params = AttackParams.of(cfg)
    stacked = _stacked(audit, name, models, x)

    def run(attack, **kw) -> list[dict]:
        if stacked is not None and attack in STACKABLE:
            return attack_members([m.module for m in models], stacked, attack, x, y, params, n_classes,
                                  models[0].seed or 0, **kw)
        return [run_attack(m.module, attack, x, y, params, n_classes, m.seed or 0, **kw) for m in models]

    def cascaded(attack, alive: list[np.ndarray], **kw) -> list[dict]:
        """`run(attack)` on each model's inputs still unbroken (`alive`): where the models are
        attacked stacked, on the inputs any of them still holds, each model's result then cut
        to its own."""
        if stacked is not None and attack in STACKABLE:
            rows = np.flatnonzero(np.logical_or.reduce(alive))
            runs = attack_members([m.module for m in models], stacked, attack, x[rows], y[rows], params, n_classes,
                                  models[0].seed or 0, **kw) if len(rows) else [None] * len(models)
            return [_on_every_input(r, rows, keep, x, attack, kw["return_examples"]) for r, keep in zip(runs, alive)]
        out = []
        for m, keep in zip(models, alive):
            rows = np.flatnonzero(keep)
            result = run_attack(m.module, attack, x[rows], y[rows], params, n_classes, m.seed or 0, **kw) if len(rows) else None
            out.append(_on_every_input(result, rows, keep, x, attack, kw["return_examples"]))
        return out

    linf = threat_attacks(cfg.attacks, "linf")
    per_attack: dict[str, list[dict]] = {}
    alive: dict[str, list[np.ndarray]] = {}  # per norm, per model: inputs every attack so far failed on
    for a in attack_order(cfg.attacks):
        norm = ATTACKS[a].norm
        if a in EVERY_INPUT or norm not in alive:
            per_attack[a] = run(a, return_examples=(a in linf))
            alive.setdefault(norm, [r["clean"].copy() for r in per_attack[a]])
        else:
            per_attack[a] = cascaded(a, alive[norm], return_examples=(a in linf))
        alive[norm] = [keep & r["robust"] for keep, r in zip(alive[norm], per_attack[a])]
    pgd_main = per_attack.get("pgd") or run("pgd", return_examples=True)
    curve = {eps: pgd_main if eps == cfg.eps else run("pgd", eps=eps) for eps in sorted(set(cfg.budgets) | {cfg.eps})}
    # the L2 threat model's own curve: PGD-L2 at half, one and two times eps_l2
    curve_l2 = {eps: per_attack["pgd_l2"] if eps == cfg.eps_l2 else run("pgd_l2", eps=eps)
                for eps in l2_budgets(cfg.eps_l2)} if "pgd_l2" in per_attack else {}
    fgsm = per_attack.get("fgsm") or run("fgsm")
    pgd_double, large = run("pgd", steps=2 * cfg.steps), run("pgd", eps=cfg.large_eps)
    out = []
    for i, model in enumerate(models):
        mine = {a: runs[i] for a, runs in per_attack.items()}
        main = pgd_main[i]
        robust, broken_by, who = worst_case({a: r["robust"] for a, r in mine.items()}, main["clean"])
        out.append({
            "clean": main["clean"], "worst": robust, "broken_by": broken_by, "broken_by_example": who,
            "per_attack": {a: r["robust"] for a, r in mine.items()},
            "costs": [r["cost"] for r in mine.values()],
            "curve": {eps: runs[i]["robust"] for eps, runs in curve.items()},
            "curve_l2": {eps: runs[i]["robust"] for eps, runs in curve_l2.items()},
            "fgsm": fgsm[i]["robust"], "pgd": main["robust"],
            "pgd_double": pgd_double[i]["robust"], "large": large[i]["robust"],
            "gradients": input_gradient_stats(model.module, x, y), "outputs": output_stats(model.module, x),
            "pgd_examples": main["examples"],
            "linf_worst_examples": _worst_examples({a: mine[a] for a in per_attack if a in linf}, main["examples"]),
        })
    return out


def _on_every_input(result: dict | None, rows: np.ndarray, alive: np.ndarray, x: torch.Tensor, attack: str,
                    with_examples: bool) -> dict:
    """A cascaded attack's result on the inputs it ran on (`rows`), as a result on every input:
    robust only where the input was still unbroken (`alive`) and this attack failed too. "clean"
    is `alive` (what it was set on, for `_worst_examples`). `with_examples` (a Linf attack, whose
    examples the worst case reads): "examples" on every input, the other inputs keeping their
    clean input (never read: an earlier attack broke them, or the model was wrong on them); without
    it no copy of the inputs is made. None: it ran on no input at all."""
    robust = np.zeros(len(alive), dtype=bool)
    examples = x.clone() if with_examples else None
    if result is None:
        cost = {"attack": attack, "norm": ATTACKS[attack].norm, "kind": ATTACKS[attack].kind, "seconds": 0.0,
                "forward_passes": 0, "backward_passes": 0, "out_of_budget": 0, "non_finite": 0}
    else:
        robust[rows] = result["robust"]
        cost = dict(result["cost"])
        if examples is not None:
            examples[torch.from_numpy(rows)] = result["examples"]
    cost["inputs_attacked"] = int(alive.sum())  # of len(alive): the cascade's share
    out = {"robust": robust & alive, "clean": alive.copy(), "cost": cost}
    return out if examples is None else {**out, "examples": examples}


def _worst_examples(runs: dict[str, dict], fallback: torch.Tensor) -> torch.Tensor:
    """Per test input, the adversarial example of the first attack (configured order) that broke
    the model on it, or `fallback`'s (PGD's) where none did: the Linf worst case as inputs, which
    other suites replay on other forms of the model (its quantised copies)."""
    examples, taken = fallback.clone(), np.zeros(len(fallback), dtype=bool)
    for run in runs.values():
        # an input the model already got wrong was not attacked (torchattacks hands some back
        # unperturbed): it keeps PGD's example, which was
        newly = run["clean"] & ~run["robust"] & ~taken
        examples[torch.from_numpy(newly)] = run["examples"][torch.from_numpy(newly)]
        taken |= newly
    return examples


RECORD_FIELDS = ("broken_by", "broken_by_example", "costs", "gradients", "outputs")
ARRAY_FIELDS = ("clean", "worst", "fgsm", "pgd", "pgd_double", "large")


def _entry(one: dict) -> tuple[dict, dict]:
    """One seed's attack results as a cache entry: (tensors, record)."""
    tensors = {k: torch.from_numpy(np.asarray(one[k])) for k in ARRAY_FIELDS}
    tensors.update({f"per_attack/{a}": torch.from_numpy(np.asarray(v)) for a, v in one["per_attack"].items()})
    tensors.update({f"curve/{eps!r}": torch.from_numpy(np.asarray(v)) for eps, v in one["curve"].items()})
    tensors.update({f"curve_l2/{eps!r}": torch.from_numpy(np.asarray(v)) for eps, v in one["curve_l2"].items()})
    tensors["pgd_examples"], tensors["linf_worst_examples"] = one["pgd_examples"], one["linf_worst_examples"]
    return tensors, {k: one[k] for k in RECORD_FIELDS}


def _seed_key(audit: AuditSession, model) -> str:
    return cache_key({"kind": "adversarial-seed", "model": model.key, "cfg": audit.config.adversarial.to_dict(),
                      "data": audit.data.fingerprint, "device": audit.device.type, "code": CODE_DIGEST,
                      **audit.model_code([model])})


def seeds_attacks(audit: AuditSession, name: str, models: list) -> list[tuple[dict, dict]]:
    """`_attack_seeds` of each of `models` (trained seeds of `name`), each cached on disk as its own
    entry (keyed by that seed's weights, the attack settings, the data, the device and the attack
    code), whether it was attacked stacked with the others or alone, so a stacked and a lone run
    share the cache. Where the seeds are attacked stacked (`attacks_stack`), the first seed the
    cache lacks is computed under its entry's lock together with every other seed still missing
    then, and those are stored as their turns come (unless another process stored one first).
    The adversarial job's parts call this for all seeds (stacked) or for one seed each (side by
    side); `adversarial` merges them."""
    cfg, data = audit.config.adversarial, audit.data
    x, y = data.evaluation_subset("test", cfg.n_examples)
    keys = {m.key: _seed_key(audit, m) for m in models}
    together: dict[str, dict] = {}  # seeds attacked with an earlier one, waiting for their turn

    def compute(model):
        if model.key not in together and len(models) > 1 and attacks_stack(audit, name):
            missing = [m for m in models if m.key == model.key or (
                m.key not in together and not audit.cache.contains(keys[m.key], "result"))]
            if len(missing) > 1:
                together.update(zip([m.key for m in missing], _attack_seeds(audit, name, missing, x, y)))
        one = together.pop(model.key, None) or _attack_seeds(audit, name, [model], x, y)[0]
        return _entry(one)

    def cached(model):
        tensors, record, _ = audit.cache.get_or_create(keys[model.key], lambda: compute(model), kind="result")
        together.pop(model.key, None)  # another process stored it first: ours is not needed
        return tensors, record
    return [audit.memo(("adversarial-seed", m.key), lambda m=m: cached(m)) for m in models]


def adversarial(audit: AuditSession, name: str) -> dict:
    """Every configured attack at the main budget, the PGD budget curve, the extra runs the
    sanity checks need, gradient and output statistics, and the PGD examples (for transfer);
    stacked over seeds. Each seed's are cached on disk (`seeds_attacks`): xdist workers, the job
    graph's parts and later runs share them."""
    def compute():
        seeds = seeds_attacks(audit, name, audit.zoo.models(name))
        tensors = [t for t, _ in seeds]
        stack = lambda k: np.stack([t[k].numpy() for t in tensors])
        keyed = lambda prefix: sorted((k for k in tensors[0] if k.startswith(prefix)),  # by budget
                                      key=lambda k: float(k.split("/", 1)[1]))
        return {
            **{k: stack(k) for k in ARRAY_FIELDS},
            # in the configured order, whether this process computed the results or read them back
            # (files hold their tensors sorted by name): the worst case credits each broken
            # example to the first attack in this order
            "per_attack": {a: stack(f"per_attack/{a}") for a in attack_order(audit.config.adversarial.attacks)
                           if f"per_attack/{a}" in tensors[0]},
            "curve": {float(k.split("/", 1)[1]): stack(k) for k in keyed("curve/")},
            "curve_l2": {float(k.split("/", 1)[1]): stack(k) for k in keyed("curve_l2/")},
            "pgd_examples": [t["pgd_examples"] for t in tensors],
            "linf_worst_examples": [t["linf_worst_examples"] for t in tensors],
            **{k: [r[k] for _, r in seeds] for k in RECORD_FIELDS},
            "n_classes": audit.data.n_classes,
        }
    return audit.memo(("adversarial", name), compute)


def planned_parts(audit: AuditSession, name: str) -> list[Part]:
    """The adversarial job's parts: where the seeds are attacked stacked (`attacks_stack`), one
    part that attacks them all at once; otherwise each seed attacked on its own, side by side
    (`seeds_attacks`); the job itself then merges them. Each part's share is its seeds' attack
    passes."""
    grads, forwards = planned_passes(audit.config, audit.data.n_classes)
    seeds = audit.zoo.trained_seeds(name)

    def attack(chosen):  # only those seeds' models are loaded
        models = audit.zoo.models(name, seeds=tuple(chosen)) if chosen != [None] else audit.zoo.models(name)
        seeds_attacks(audit, name, models)

    work = lambda n: Work(attack_gradient_passes=grads * n, attack_forward_passes=forwards * n)
    if len(seeds) > 1 and attacks_stack(audit, name):
        return [Part("seeds", work(len(seeds)), lambda: attack(list(seeds)))]
    return [Part(f"seed-{seed if seed is not None else 'pretrained'}", work(1), lambda seed=seed: attack([seed]))
            for seed in seeds]


def transfer(audit: AuditSession, source: str, target: str) -> np.ndarray:
    """Target's per-example correctness on PGD examples crafted on the source, one row per target
    seed: seed k onto seed k; a pretrained source (one "seed") onto every seed of the target. (Zipped,
    a pretrained source gave one row for a target of three seeds, which the worst case then
    broadcast onto all three.)"""
    cfg, data = audit.config.adversarial, audit.data
    _, y = data.evaluation_subset("test", cfg.n_examples)
    crafted = adversarial(audit, source)["pgd_examples"]
    rows = [predicted_as(audit, [m], crafted[k % len(crafted)], y)[0] for k, m in enumerate(audit.zoo.models(target))]
    return np.stack(rows)


def masked(audit: AuditSession, name: str) -> list[str]:
    """The gradient-masking sanity checks this model fails (empty when its evaluation is sound).
    Judged once per audit: every robustness finding, comparison and escalation of the model asks,
    and the checks compute intervals."""
    def judge():
        result = dict(adversarial(audit, name), large_eps=audit.config.adversarial.large_eps)
        return masking_failures(result, audit.config.policy)
    return list(audit.memo(("masked", name), judge))


def escalation(audit: AuditSession, name: str) -> dict:
    """Stronger attacks for a model whose masking checks fail, Linf at the main budget, as
    {"robust": {label: seeds x examples}, "labels": {label: what it is}}:
    - Square with four times the queries and two restarts (no gradients needed);
    - PGD examples crafted on each other model of its group, seed k onto seed k (transfer);
    - PGD and APGD-CE through `bpda_forward`, when the model offers that differentiable
      stand-in for a non-differentiable step (BPDA);
    - PGD on the mean of eight forward passes, when its forward pass is random (EOT).
    Cached like the attack results."""
    cfg, data = audit.config.adversarial, audit.data
    x, y = data.evaluation_subset("test", cfg.n_examples)
    group = audit.zoo.spec(name).group
    sources = [n for n, s in audit.zoo.specs.items() if s.group == group and n != name]
    nondeterministic = "deterministic_eval" in masked(audit, name)

    def compute():
        arrays: dict[str, list] = {}
        labels: dict[str, str] = {}
        params = AttackParams.of(cfg)
        stronger = dataclasses.replace(params, square_queries=4 * cfg.square_queries, square_restarts=2)
        for m in audit.zoo.models(name):
            seed, n_classes = m.seed or 0, data.n_classes
            runs = {"square_x4": run_attack(m.module, "square", x, y, stronger, n_classes, seed)}
            labels["square_x4"] = f"Square, {4 * cfg.square_queries} queries, 2 restarts"
            surrogate = getattr(m.module, "bpda_forward", None)
            if callable(surrogate):
                wrapper = StraightThrough(m.module, surrogate)
                for attack in ("pgd", "apgd_ce"):
                    runs[f"bpda_{attack}"] = run_attack(m.module, attack, x, y, params, n_classes, seed,
                                                        attack_model=wrapper)
                    labels[f"bpda_{attack}"] = f"{attack} through the model's bpda_forward (BPDA)"
            if nondeterministic:
                runs["eot_pgd"] = run_attack(m.module, "pgd", x, y, params, n_classes, seed,
                                             attack_model=ExpectationOverRandomness(m.module))
                labels["eot_pgd"] = "PGD on the mean of 8 random forward passes (EOT)"
            for label, run in runs.items():
                arrays.setdefault(label, []).append(run["robust"])
        for source in sources:
            try:
                arrays[f"transfer_from_{source}"] = list(transfer(audit, source=source, target=name))
                labels[f"transfer_from_{source}"] = f"PGD examples crafted on {source}"
            except Exception:  # noqa: BLE001  a broken source model costs its transfer row only
                continue
        return {k: np.stack(v) for k, v in arrays.items()}, {"labels": labels}

    def load():
        arrays, record = audit.cached_arrays(
            "adversarial-escalation", audit.zoo.models(name) + [m for s in sources for m in _safe_models(audit, s)],
            {**cfg.to_dict(), "sources": sources, "nondeterministic": nondeterministic}, CODE_DIGEST, compute)
        return {"robust": arrays, "labels": record["labels"]}
    return audit.memo(("escalation", name), load)


def _safe_models(audit: AuditSession, name: str) -> list:
    try:
        return audit.zoo.models(name)
    except Exception:  # noqa: BLE001
        return []


def threat_worst_case(audit: AuditSession, name: str, threat: str) -> dict:
    """The per-example worst case within one threat model (Linf at eps, or L2 at eps_l2): the
    configured attacks of that norm, plus, for a model whose masking checks fail, the Linf
    escalation. {"robust", "broken_by", "broken_by_example", "attacks", "masked", "escalated"}."""
    result = adversarial(audit, name)
    attacks = threat_attacks(result["per_attack"], threat)
    per = {a: result["per_attack"][a] for a in attacks}
    failures = masked(audit, name)
    escalated: dict[str, str] = {}
    if failures and THREAT_MODELS[threat] == "Linf":
        extra = escalation(audit, name)
        per.update(extra["robust"])
        escalated = extra["labels"]
    robust, broken_by, who = worst_case(per, result["clean"])
    return {"robust": robust, "broken_by": broken_by, "broken_by_example": who, "attacks": attacks,
            "masked": failures, "escalated": escalated}


def prefetch(audit: AuditSession, name: str) -> None:
    """Every cached adversarial measurement of `name`: the xdist prefetch."""
    adversarial(audit, name)
