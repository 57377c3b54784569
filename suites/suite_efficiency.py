"""Efficiency suite: what the candidate buys. Clean accuracy at matched parameters, the compute to
reach a common validation-accuracy target (steps, counted FLOPs, seconds; from the learning
curves recorded during the normal training), step time, inference latency and throughput, and
training memory, each compared with every baseline of the family."""

import numpy as np
import pytest

from swiglu_audit.checks.efficiency import CLEAN_ACCURACY_COMPARISON, EFFICIENCY_COMPARISONS, EFFICIENCY_METRICS, TRAINING_EFFICIENCY
from swiglu_audit.measure import efficiency as measure
from swiglu_audit.measure.adversarial import clean_correct
from swiglu_audit.measure.numerical import n_parameters
from swiglu_audit.methods.efficiency import parameter_mismatch
from swiglu_audit.verdicts.risk import decided_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import bracketed_relative_comparison


@pytest.mark.swiglu_audit_check(CLEAN_ACCURACY_COMPARISON)
def test_clean_accuracy_vs_baseline(audit, audit_pair, record_finding):
    candidate, baseline = audit_pair
    n_cand, n_base = n_parameters(audit, candidate), n_parameters(audit, baseline)
    mismatch = parameter_mismatch(n_cand, n_base)
    finding = judged_comparison(
        audit, CLEAN_ACCURACY_COMPARISON, [candidate, baseline], "clean test accuracy",
        lambda session: session.statistics.compare(clean_correct(session, candidate), clean_correct(session, baseline)),
        details={"n_parameters": {candidate: n_cand, baseline: n_base}, "parameter_mismatch": mismatch,
                 "training_steps": audit.zoo.models(candidate)[0].record.get("steps")},
        facts=lambda session: {"parameter_mismatch": mismatch, "n_parameters": (n_cand, n_base)})
    record_finding(finding)


@pytest.mark.swiglu_audit_check(TRAINING_EFFICIENCY)
def test_training_efficiency(audit, audit_model, record_finding):
    if audit.zoo.spec(audit_model).weights:
        pytest.skip(f"'{audit_model}' is loaded from weights: the audit did not train it, so it has no learning curve")
    m = measure.per_model(audit, audit_model)
    if None in m["flops_to_target"]:
        pytest.skip(_NO_FLOPS.format(audit_model))
    target = measure.family_target(audit, audit_model)
    flops = audit.statistics.mean(np.asarray(m["flops_to_target"], dtype=float)[:, None])
    missed = [seed for seed, hit in zip(audit.config.seeds, m["reached"]) if not hit]
    facts = {"model": audit_model, "missed": missed, "target": m["target"], "target_rule": target["how"],
             "flops": flops.value, "steps": float(np.mean(m["steps_to_target"])),
             "seconds": float(np.mean(m["seconds_to_target"])), "final_val_accuracy": float(np.mean(m["final_val_accuracy"]))}
    curves = m["curves"]
    details = {
        "target": m["target"], "target_rule": target["how"], "reached": m["reached"],
        "flops_to_target": m["flops_to_target"], "steps_to_target": m["steps_to_target"],
        "seconds_to_target": m["seconds_to_target"], "final_val_accuracy": m["final_val_accuracy"],
        "train_flops_per_example": m["train_flops_per_example"],
        "step_time_seconds": m["step_time"], "training_memory": m["memory"],
        "device": audit.device.type,
        "accuracy_vs_flops": measure.mean_curve(curves, "flops", "val_accuracy"),
        "accuracy_vs_steps": measure.mean_curve(curves, "step", "val_accuracy"),
        "accuracy_vs_seconds": measure.mean_curve(curves, "seconds", "val_accuracy"),
        "loss_vs_flops": measure.mean_curve(curves, "flops", "val_loss"),
    }
    record_finding(decided_finding(
        TRAINING_EFFICIENCY, [audit_model], facts, audit.config.policy,
        value=flops.value, ci=(flops.ci_low, flops.ci_high), df=flops.df, ci_level=flops.level, details=details))


_NO_FLOPS = ("torch's FLOP counter counted no FLOPs in a training step of '{}' (its forward pass uses no "
             "matmul or convolution the counter knows): compute to target is compared in steps and seconds only")


def _relative(values) -> np.ndarray:
    """Per seed (a list) -> (seeds x 1); per seed and repeat (a list of lists) -> (seeds x repeats)."""
    m = np.asarray(values, dtype=float)
    return m[:, None] if m.ndim == 1 else m


def _comparison_test(metric):
    info = EFFICIENCY_COMPARISONS[metric.name]

    @pytest.mark.swiglu_audit_check(info)
    def test(audit, audit_pair, record_finding):
        candidate, baseline = audit_pair
        for name in audit_pair:
            if audit.zoo.spec(name).weights:
                pytest.skip(f"'{name}' is loaded from weights: the audit did not train it")
        if metric.name == "flops_to_target":
            for name in audit_pair:
                if None in measure.per_model(audit, name)["flops_to_target"]:
                    pytest.skip(_NO_FLOPS.format(name))
        def values(session):
            if metric.name in ("latency", "throughput"):  # measured in turns, pair by pair
                return tuple(_relative(v) for v in measure.paired_timings(session, candidate, baseline)[metric.name])
            return tuple(_relative(measure.per_model(session, name)[metric.name]) for name in audit_pair)

        def compare(session):
            a, b = values(session)
            if metric.name.endswith("_to_target"):  # read off learning curves: `bracketed`
                return bracketed(session, a[:, 0], b[:, 0])
            # (candidate - baseline) / baseline mean, by the delta method: the baseline arm's
            # spread is scaled by the ratio too, since its mean divides the candidate's
            ratio = float(a.mean() / b.mean())
            return session.statistics.compare(a / float(b.mean()), 1 + ratio * (b / float(b.mean()) - 1))

        def bracketed(session, a, b):
            """Each seed's first measured crossing of the target lies between two points of its
            curve; the interval covers it wherever it lies there. A candidate seed already at the
            target at its curve's first point crossed anywhere from step 0 (a baseline's such
            seed is the first-point cap's)."""
            cand_model, base_model = (measure.per_model(session, name) for name in audit_pair)
            cand = np.asarray(cand_model["brackets"][metric.name], dtype=float)
            cand[np.asarray(cand_model["first_point"], dtype=bool), 0] = 0.0
            stats = session.statistics
            return bracketed_relative_comparison(
                a, b, cand, base_model["brackets"][metric.name], stats.level, stats.alpha,
                baseline_unbounded=not all(base_model["reached"]), candidate_unbounded=not all(cand_model["reached"]))

        def facts(session):  # what the modifiers read, from the last look's seeds
            seeds = session.config.seeds
            to_target = metric.name.endswith("_to_target")
            reached = measure.per_model(session, candidate)["reached"] if to_target else []
            # the baseline's seeds at the target at their first curve point: its lower ends are unknown
            first = [seed for seed, at_first in zip(seeds, measure.per_model(session, baseline)["first_point"])
                     if at_first] if to_target else []
            return {"n_seeds": len(seeds), "candidate": candidate,
                    "candidate_missed": [seed for seed, hit in zip(seeds, reached) if not hit],
                    "at_first_point": {baseline: first} if first else {}}
        a, b = values(audit)
        scale = float(b.mean())
        finding = judged_comparison(
            audit, info, [candidate, baseline], f"{metric.what} (relative to the baseline's mean)", compare,
            details={"unit": metric.unit, "candidate": a.tolist(), "baseline": b.tolist(),
                     "candidate_mean": float(a.mean()), "baseline_mean": scale, "device": audit.device.type,
                     # wall-clock: listed by `compare`, never gating a scheduled audit (regressions.py)
                     "indicative": metric.timing},
            facts=facts)
        record_finding(finding)

    test.__name__ = f"test_{metric.name}_vs_baseline"
    return test


for _metric in EFFICIENCY_METRICS:
    globals()[f"test_{_metric.name}_vs_baseline"] = _comparison_test(_metric)
