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
from swiglu_audit.risk import Status, judge_interval, make_finding, no_better_than, no_worse_than, with_status
from swiglu_audit.sequential import final_session, judged_comparison


@pytest.mark.swiglu_audit_check(CLEAN_ACCURACY_COMPARISON)
def test_clean_accuracy_vs_baseline(audit, audit_pair, record_finding):
    policy = audit.config.policy
    candidate, baseline = audit_pair
    n_cand, n_base = n_parameters(audit, candidate), n_parameters(audit, baseline)
    mismatch = parameter_mismatch(n_cand, n_base)
    finding = judged_comparison(
        audit, CLEAN_ACCURACY_COMPARISON, [candidate, baseline], "clean test accuracy",
        lambda session: session.statistics.compare(clean_correct(session, candidate), clean_correct(session, baseline)),
        details={"n_parameters": {candidate: n_cand, baseline: n_base}, "parameter_mismatch": mismatch,
                 "training_steps": audit.zoo.models(candidate)[0].record.get("steps")})
    if mismatch > policy["max_param_mismatch"]:
        finding = no_better_than(finding, Status.WARN, (
            f"but parameter counts differ by {mismatch:.1%} ({n_cand} vs {n_base}), more than "
            f"max_param_mismatch = {policy['max_param_mismatch']}, so this is not a matched comparison"))
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
    if missed:
        status = Status.WARN
        reason = (f"'{audit_model}' did not reach the target validation accuracy {m['target']:.3f} with seed(s) "
                  f"{missed} within the recipe's budget; its compute to target is a lower bound")
    else:
        status = Status.PASS
        reason = (f"'{audit_model}' reached the target validation accuracy {m['target']:.3f} with every seed, "
                  f"after {flops.value:.3g} training FLOPs on average ({np.mean(m['steps_to_target']):.0f} steps, "
                  f"{np.mean(m['seconds_to_target']):.2f} s); final validation accuracy "
                  f"{np.mean(m['final_val_accuracy']):.3f}")
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
    record_finding(make_finding(
        TRAINING_EFFICIENCY, [audit_model], status, reason,
        threshold=f"every seed reaches the target validation accuracy ({target['how']})",
        value=flops.value, ci=(flops.ci_low, flops.ci_high), ci_level=flops.level, details=details))


_NO_FLOPS = ("torch's FLOP counter counted no FLOPs in a training step of '{}' (its forward pass uses no "
             "matmul or convolution the counter knows): compute to target is compared in steps and seconds only")


def _relative(values) -> np.ndarray:
    """Per seed (a list) -> (seeds x 1); per seed and repeat (a list of lists) -> (seeds x repeats)."""
    m = np.asarray(values, dtype=float)
    return m[:, None] if m.ndim == 1 else m


def _censored(finding, candidate: str, reached: list[bool], seeds):
    """A candidate seed that never reached the target has only a lower bound (its whole budget):
    its true cost may be higher, so a PASS would rest on a number known to flatter it. (A
    baseline's lower bound only understates the candidate's advantage.)"""
    missed = [seed for seed, hit in zip(seeds, reached) if not hit]
    if not missed:
        return finding
    return no_better_than(finding, Status.WARN, f"inconclusive: '{candidate}' did not reach the target with seed(s) "
                          f"{missed}, so its value is a lower bound")


def _required_gain(finding, gain: float, n_seeds: int):
    """With min_efficiency_gain set, the candidate must need at least that share fewer FLOPs to
    the target, by the audit's one rule (judge_interval, the relative difference at most -gain):
    PASS when the whole interval shows it, FAIL when the whole interval falls short, WARN
    (inconclusive) in between, and never PASS on one seed."""
    low, high = finding.ci_low, finding.ci_high
    status = judge_interval(finding.value, (low, high), -gain, False, Status.FAIL)
    if status is Status.PASS and n_seeds < 2:
        return with_status(finding, Status.WARN, f"inconclusive against min_efficiency_gain = {gain}: one seed "
                           "per architecture cannot show a gain of the architecture")
    if status is Status.PASS:
        return with_status(finding, Status.PASS, f"the required gain min_efficiency_gain = {gain} is shown "
                           f"(interval's upper end {high:+.3f})")
    if status is Status.FAIL:
        return with_status(finding, Status.FAIL, f"the required gain min_efficiency_gain = {gain} is not met: "
                           f"even the interval's lower end {low:+.3f} saves less")
    return with_status(finding, Status.WARN, f"inconclusive against min_efficiency_gain = {gain}: the interval "
                       f"[{low:+.3f}, {high:+.3f}] holds both a sufficient and an insufficient gain")


def _comparison_test(metric):
    info = EFFICIENCY_COMPARISONS[metric.name]

    @pytest.mark.swiglu_audit_check(info)
    def test(audit, audit_pair, record_finding):
        candidate, baseline = audit_pair
        for name in audit_pair:
            if audit.zoo.spec(name).weights:
                pytest.skip(f"'{name}' is loaded from weights: the audit did not train it")
        policy = audit.config.policy
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
            # (candidate - baseline) / baseline mean, by the delta method: the baseline arm's
            # spread is scaled by the ratio too, since its mean divides the candidate's
            ratio = float(a.mean() / b.mean())
            return session.statistics.compare(a / float(b.mean()), 1 + ratio * (b / float(b.mean()) - 1))
        a, b = values(audit)
        scale = float(b.mean())
        finding = judged_comparison(
            audit, info, [candidate, baseline], f"{metric.what} (relative to the baseline's mean)", compare,
            details={"unit": metric.unit, "candidate": a.tolist(), "baseline": b.tolist(),
                     "candidate_mean": float(a.mean()), "baseline_mean": scale, "device": audit.device.type,
                     # wall-clock: listed by `compare`, never gating a scheduled audit (regressions.py)
                     "indicative": metric.timing})
        if metric.timing:
            finding = no_worse_than(finding, Status.WARN, "a wall-clock timing on a machine the audit shares "
                                    "with its own workers is indicative, never a FAIL")
        gain = policy["min_efficiency_gain"]
        if metric.name == "flops_to_target" and gain > 0:
            finding = _required_gain(finding, gain, len(final_session(audit, finding).config.seeds))
        if metric.name.endswith("_to_target"):
            session = final_session(audit, finding)
            finding = _censored(finding, candidate, measure.per_model(session, candidate)["reached"], session.config.seeds)
        record_finding(finding)

    test.__name__ = f"test_{metric.name}_vs_baseline"
    return test


for _metric in EFFICIENCY_METRICS:
    globals()[f"test_{_metric.name}_vs_baseline"] = _comparison_test(_metric)
