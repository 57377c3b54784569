"""Efficiency measurements per model, memoised per process: learning curves and compute to a
target (read off the training records, so no extra training), step time, inference timings and
training memory."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelContractError
from ..methods import efficiency as efficiency_methods
from ..methods.efficiency import first_reaching, paired_inference_timings, reaching_bracket, training_memory_bytes
from ..training.cache import code_digest

if TYPE_CHECKING:
    from ..session import AuditSession

AUTO_TARGET_SHARE = 0.95  # auto target when training saturates in one epoch: this share of the weakest final accuracy
AUTO_TARGET_GAP = 0.5  # auto target: this far from the best first-epoch accuracy towards the weakest final one
TIMING_REPEATS = 7


def learning_curves(audit: AuditSession, name: str) -> list[list[dict]]:
    """Per seed, the learning curve recorded during training: at steps 1, 2, 4, 8, ... and at every
    epoch's end, the step, examples seen, training seconds (evaluation excluded), FLOPs, validation
    loss and accuracy."""
    return [list(m.record.get("curve") or []) for m in audit.zoo.models(name)]


def _final_val_accuracy(curves: list[list[dict]]) -> float | None:
    finals = [c[-1]["val_accuracy"] for c in curves if c and c[-1].get("val_accuracy") is not None]
    return float(np.mean(finals)) if finals else None


def _first_epoch_accuracy(audit: AuditSession, name: str) -> float | None:
    """The best validation accuracy any seed of the model had at the end of its first epoch."""
    firsts = [m.record["history"][0].get("val_accuracy") for m in audit.zoo.models(name) if m.record.get("history")]
    firsts = [f for f in firsts if f is not None]
    return max(firsts) if firsts else None


def family_target(audit: AuditSession, name: str) -> dict:
    """The validation-accuracy target of the model's group: `efficiency_target_accuracy` when the
    policy sets one (above 0). Else a target that no model reaches within its first epoch (a
    target reached in the first epoch measures the first few steps, not what a training run
    costs) but every model reaches on average: AUTO_TARGET_GAP of the way from the best
    first-epoch accuracy of the group to its lowest final one (mean over seeds). Where the group
    saturates within one epoch, AUTO_TARGET_SHARE of the lowest final accuracy, and it says so."""
    group = audit.zoo.spec(name).group

    def compute():
        set_target = audit.config.policy["efficiency_target_accuracy"]
        if set_target > 0:
            return {"target": float(set_target), "how": f"efficiency_target_accuracy = {set_target}"}
        finals, firsts, failed = {}, {}, []
        for other, spec in audit.zoo.specs.items():
            if spec.group != group or spec.weights:
                continue
            try:
                final = _final_val_accuracy(learning_curves(audit, other))
                first = _first_epoch_accuracy(audit, other)
            except ModelContractError:  # its own findings say why; the others keep their target
                failed.append(other)
                continue
            if final is not None:
                finals[other] = final
            if first is not None:
                firsts[other] = first
        if not finals:
            return {"target": None, "how": "no model of the group has a learning curve"}
        weakest = min(finals, key=finals.get)
        left_out = f"; left out, could not be trained: {', '.join(failed)}" if failed else ""
        fastest = max(firsts, key=firsts.get) if firsts else None
        if fastest is not None and finals[weakest] > firsts[fastest]:
            target = firsts[fastest] + AUTO_TARGET_GAP * (finals[weakest] - firsts[fastest])
            return {"target": target,
                    "how": f"halfway from the best first-epoch validation accuracy of the group ({fastest}: "
                           f"{firsts[fastest]:.3f}) to the lowest final one ({weakest}: {finals[weakest]:.3f}, "
                           "mean over seeds), so that no model reaches it within its first epoch" + left_out}
        return {"target": AUTO_TARGET_SHARE * finals[weakest],
                "how": f"{AUTO_TARGET_SHARE:.0%} of the lowest final validation accuracy of the group "
                       f"({weakest}: {finals[weakest]:.3f}, mean over seeds); the group reaches its final "
                       "accuracy within one epoch, so compute to target is resolved by the first epoch's "
                       "curve points (steps 1, 2, 4, 8, ...)" + left_out}
    return audit.memo(("efficiency-target", group), compute)


def to_target(curve: list[dict], target: float) -> dict:
    """Steps, FLOPs and seconds at which one seed's curve first reaches the target; a seed that
    never reaches it gets its whole budget, marked `reached: False` (a lower bound). Beside each,
    `<field>_bracket`: the measured points around the crossing (`reaching_bracket`; the budget
    twice for a seed that missed), and `first_point`: the curve's first point already reached it."""
    acc = [e["val_accuracy"] for e in curve]
    bracket = reaching_bracket(range(len(acc)), acc, target)
    out: dict = {"reached": bracket is not None, "first_point": bool(bracket and bracket[2])}
    for field in ("step", "flops", "seconds"):
        xs = [e.get(field) for e in curve]
        if any(x is None for x in xs):
            out[field], out[f"{field}_bracket"] = None, None
            continue
        hit, around = first_reaching(xs, acc, target), reaching_bracket(xs, acc, target)
        out[field] = float(hit if hit is not None else xs[-1])
        out[f"{field}_bracket"] = [around[0], around[1]] if around is not None else [float(xs[-1])] * 2
    return out


def per_model(audit: AuditSession, name: str) -> dict:
    """Everything the suite compares, per seed (lists) or per seed and repeat (matrices)."""
    def compute():
        models = audit.zoo.models(name)
        curves = learning_curves(audit, name)
        if not all(curves) or any(c[-1].get("val_accuracy") is None for c in curves):
            raise ValueError(f"model '{name}' has no learning curve: it was not trained by the audit "
                             "(pretrained weights) or its checkpoint predates learning curves")
        target = family_target(audit, name)["target"]
        hits = [to_target(c, target) for c in curves]
        data, recipe = audit.data, audit.config.training
        batch = recipe.batch_size
        x_batch, y_batch = data.x_train[:batch].to(audit.device), data.y_train[:batch].to(audit.device)
        memory = training_memory_bytes(models[0].module, x_batch, y_batch)
        return {
            "target": target,
            "reached": [h["reached"] for h in hits],
            "first_point": [h["first_point"] for h in hits],
            # where each seed's crossing lies between measured points: what the comparisons judge
            "brackets": {"flops_to_target": [h["flops_bracket"] for h in hits],
                         "steps_to_target": [h["step_bracket"] for h in hits],
                         "seconds_to_target": [h["seconds_bracket"] for h in hits]},
            "flops_to_target": [h["flops"] for h in hits],
            "steps_to_target": [h["step"] for h in hits],
            "seconds_to_target": [h["seconds"] for h in hits],
            "final_val_accuracy": [c[-1]["val_accuracy"] for c in curves],
            "step_time": [m.record["seconds"] / m.record["steps"] for m in models],
            # counted, so one per architecture; repeated per seed for the paired statistics
            "training_memory": [memory["total"]] * len(models),
            "memory": memory,
            "train_flops_per_example": models[0].record.get("train_flops_per_example"),
            "curves": curves,
        }
    return audit.memo(("efficiency", name), compute)


def paired_timings(audit: AuditSession, candidate: str, baseline: str) -> dict:
    """Inference latency and throughput of the two models, seed by seed, measured in turns:
    {"latency": (candidate seeds x repeats, baseline seeds x repeats), "throughput": (...), "batch": n}."""
    def compute():
        x = audit.data.x_test[:1024]
        runs = [paired_inference_timings(a.module, b.module, x, audit.device, TIMING_REPEATS)
                for a, b in zip(audit.zoo.models(candidate), audit.zoo.models(baseline))]
        return {kind: tuple([r[kind][i] for r in runs] for i in (0, 1)) for kind in ("latency", "throughput")} | {
            "batch": runs[0]["batch"]}

    def cached():
        # timings describe this machine today: measured once a day, re-judged by a warm audit
        models = [*audit.zoo.models(candidate), *audit.zoo.models(baseline)]
        record = audit.cached_record("efficiency-timings", models, {"repeats": TIMING_REPEATS, **audit.machine_today()},
                                     _CODE_DIGEST, compute)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
    return audit.memo(("efficiency-timings", candidate, baseline), cached)


def mean_curve(curves: list[list[dict]], x_field: str, y_field: str) -> list[dict]:
    """The seeds' mean of `y_field` against the seeds' mean of `x_field`, epoch by epoch."""
    n = min(len(c) for c in curves)
    return [{x_field: float(np.mean([c[i][x_field] for c in curves])),
             "value": float(np.mean([c[i][y_field] for c in curves]))} for i in range(n)
            if all(c[i].get(x_field) is not None and c[i].get(y_field) is not None for c in curves)]


# the timings' cache entries follow the code that takes them
_CODE_DIGEST = code_digest(sys.modules[__name__], efficiency_methods)
