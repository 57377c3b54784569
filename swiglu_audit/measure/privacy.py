"""Membership-inference measurements per model, over all training seeds, memoised per process.

Members are records of the training split the audited models were trained on; non-members are
records of the validation and test splits, which no audited model trained on (the validation
split only draws the learning curves of a clean training); equal numbers of each. The population
the reference models are drawn from is all three splits: each reference model trains, with the
harness's recipe, on a random half of it (`methods.privacy.reference_halves`), so every record is
in the training set of half of them. Reference models are cached like every checkpoint and
counted in the plan ("privacy reference")."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ModelContractError
from ..methods import privacy as privacy_methods
from ..methods.privacy import attack_metrics, member_split, reference_halves, rmia_scores
from ..training import train as train_module
from ..training.cache import cache_key, code_digest
from ..training.planned import Trainings, Work
from ..training.train import predict_logits
from ..training.zoo_stacking import TrainingRequest

if TYPE_CHECKING:
    from ..session import AuditSession

SPLIT_SEED = 0  # the members drawn and the references' halves: fixed, so that runs and models share them
_CODE_DIGEST = code_digest(sys.modules[__name__], privacy_methods, train_module)  # the cached margins follow their code
REFERENCE_SEED = 1000  # reference model k trains from seed REFERENCE_SEED + k, apart from the audit's seeds


def out_of_scope(audit: AuditSession, name: str) -> str | None:
    """Why this model is not attacked here, or None."""
    spec = audit.zoo.spec(name)
    if spec.weights:
        return (f"'{name}' is loaded from pretrained weights: its training set is not this audit's, so which "
                "records are members is not known here")
    family = spec.scope_family  # as the poisoning suite and the plan scope it
    if family not in audit.config.privacy.families:
        return (f"the {family} family is not in [tool.swiglu_audit.privacy] families "
                f"{list(audit.config.privacy.families)}: its reference models are not trained in this profile")
    return None


def population(audit: AuditSession) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(every record of train, val and test, their labels, the number of training records first),
    gathered once per process (the reference models train on halves of it)."""
    def gather():
        data = audit.data
        return (torch.cat([data.x_train, data.x_val, data.x_test]), torch.cat([data.y_train, data.y_val, data.y_test]),
                len(data.y_train))
    return audit.memo(("privacy-population",), gather)


def population_size(audit: AuditSession) -> tuple[int, int]:
    """(all records, training records), from the splits' lengths alone."""
    data = audit.data
    return len(data.y_train) + len(data.y_val) + len(data.y_test), len(data.y_train)


def targets(audit: AuditSession) -> tuple[np.ndarray, np.ndarray]:
    """(population positions of the attacked records, which of them are members)."""
    n_all, n_train = population_size(audit)
    members, non_members = member_split(n_train, n_all - n_train, SPLIT_SEED)
    positions = np.concatenate([members, n_train + non_members])
    return positions, np.concatenate([np.ones(len(members), bool), np.zeros(len(non_members), bool)])


def _halves(audit: AuditSession) -> np.ndarray:
    """(reference models x records) membership of each reference model's half, drawn once per
    process (the plan, each model's references and the attack read the same halves)."""
    n, k = population_size(audit)[0], audit.config.privacy.reference_models
    return audit.memo(("privacy-halves", n, k), lambda: reference_halves(n, k, SPLIT_SEED))


def reference_tag(audit: AuditSession, k: int) -> str:
    """The cache tag of reference model k: its half of the population, by content."""
    def tag():
        return f"privacy-reference{k}-{cache_key({'half': np.flatnonzero(_halves(audit)[k]).tolist()})[:10]}"
    return audit.memo(("privacy-reference-tag", k, audit.config.privacy.reference_models), tag)


def references(audit: AuditSession, name: str) -> list:
    """The reference models of `name`, one per half of the population, trained as one stacked
    model where they can be (`Zoo.train_together`: each on its half, under its own seed)."""
    x, y, _ = population(audit)
    keeps = [torch.from_numpy(np.flatnonzero(half)) for half in _halves(audit)]

    def request(k: int) -> TrainingRequest:  # its half, copied out of the population
        return TrainingRequest(reference_tag(audit, k), x[keeps[k]], y[keeps[k]], (REFERENCE_SEED + k,))

    if audit.zoo.stacks(name):  # every half at once, for one stack
        requests = [request(k) for k in range(len(keeps))]
        audit.zoo.train_together(name, requests)
        return [m for r in requests
                for m in audit.zoo.models(name, labels=r.labels, inputs=r.inputs, tag=r.tag, seeds=r.seeds)]
    out = []
    for k in range(len(keeps)):  # one half in memory at a time (a large user dataset)
        r = request(k)
        out += audit.zoo.models(name, labels=r.labels, inputs=r.inputs, tag=r.tag, seeds=r.seeds)
    return out


def planned_work(audit: AuditSession, name: str) -> Work:
    """The privacy job's declared work on one model: its reference models, each on its half of
    the records, and every attacked record through each seed and reference model."""
    if out_of_scope(audit, name) is not None:
        return Work()
    k, seeds = audit.config.privacy.reference_models, len(audit.config.seeds)
    references = Trainings([reference_tag(audit, i) for i in range(k)], audit.config.training.epochs,
                           tuple(REFERENCE_SEED + i for i in range(k)), paired=True,
                           examples=population_size(audit)[0] // 2)
    return Work(trainings={"privacy reference": references}, forward_examples=(seeds + k) * len(targets(audit)[0]))


def budget_cuts(audit: AuditSession) -> list[tuple[str, dict]]:
    """Settings that make the suite cheaper: one family fewer attacked (its references untrained)."""
    families = audit.config.privacy.families
    attacked = {audit.zoo.spec(n).scope_family for n in audit.zoo.specs if out_of_scope(audit, n) is None}
    cuts = []
    for dropped in [f for f in ("user", "vit", "mlp") if f in families and f in attacked]:
        kept = [f for f in families if f != dropped]
        if kept:
            cuts.append((f"[tool.swiglu_audit.privacy] families = {kept} (no membership inference on the {dropped} "
                         "models: their reference models are not trained)", {"privacy": {"families": kept}}))
    return cuts


def prefetch(audit: AuditSession, name: str) -> None:
    """The reference models of `name` and its membership scores: the suite's job (xdist
    prefetch, job graph)."""
    if out_of_scope(audit, name) is None:
        membership(audit, name)


def true_label_margin(model, x: torch.Tensor, y: torch.Tensor, device) -> np.ndarray:
    """Per record z_y - logsumexp of the other classes' logits, in float64: the logit-scaled
    confidence (Carlini et al. 2022), log p / (1 - p) of the true label. Its log-sigmoid is log p,
    exact where a float32 softmax would round p to 1 for every confident record."""
    logits = predict_logits(model, x, device).double()
    if not torch.isfinite(logits).all():
        raise ModelContractError("the model's logits on the membership records contain NaN or infinity")
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf")).logsumexp(1)
    return (true - others).numpy()


def _log_probability(margin: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -margin)  # log sigmoid, stable for large margins


def membership(audit: AuditSession, name: str) -> dict:
    """{"rmia": attack_metrics of RMIA, "loss": of the loss-threshold baseline, "is_member",
    "n_references"}: per seed of the audited model, on the same records and resamples."""
    def compute():
        positions, is_member = targets(audit)
        audited, reference_models = audit.zoo.models(name), references(audit, name)

        def margins():
            x, y, _ = population(audit)
            xt, yt = x[torch.from_numpy(positions)], y[torch.from_numpy(positions)]
            return {"target": np.stack([true_label_margin(m.module, xt, yt, audit.device) for m in audited]),
                    "refs": np.stack([true_label_margin(m.module, xt, yt, audit.device) for m in reference_models])}, {}

        # the records' margins through every model, on disk: the privacy job (another process, a
        # Ray worker) leaves them for the checks, and a warm audit re-judges without them
        arrays, _ = audit.cached_arrays("membership-margins", list(audited) + list(reference_models),
                                        {"targets": cache_key({"positions": positions.tolist()})}, _CODE_DIGEST,
                                        margins)
        target, refs = arrays["target"], arrays["refs"]
        halves = _halves(audit)[:, positions]
        stats = audit.statistics
        scores = rmia_scores(_log_probability(target), _log_probability(refs), halves)
        return {"rmia": attack_metrics(scores, is_member, stats.n_boot, stats.seed),
                "loss": attack_metrics(target, is_member, stats.n_boot, stats.seed),
                "is_member": is_member, "n_references": len(refs)}
    return audit.memo(("membership", name), compute)
