"""Data-poisoning suite, the attacks: label flipping (random and targeted) and backdoors, each
model trained on the poisoned sets, and the candidate against each baseline. Finding the poison
(the detectors, the scan of the user's own training set, data integrity) is in
suite_poisoning_data.py.

Models whose family is not in [tool.swiglu_audit.poisoning] families (and models loaded from
pretrained weights, which cannot be retrained) are skipped, with the reason in the skip message.
"""

import numpy as np
import pytest

from swiglu_audit.checks.poisoning import BACKDOOR, BACKDOOR_COMPARISON, LABEL_FLIP, LABEL_FLIP_COMPARISON, TARGETED_FLIP
from swiglu_audit.measure import poisoning as measure
from swiglu_audit.pytest.fixtures import skip_unless_poisoned
from swiglu_audit.verdicts.risk import comparison_finding, judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import paired_comparison, share_floor


def _largest_rate_vs_clean(audit, result: dict):
    """The poisoned model at the largest rate vs the clean model of the same architecture and
    seeds, paired on the same test inputs."""
    rate = max(result["rates"])
    return rate, audit.statistics.compare(result["poisoned"][rate], result["clean"])


def _curve(audit, points: dict, zero=None) -> list[dict]:
    """[{rate, value, ci_low, ci_high ...}] for the report's rate plots; rate 0 is the clean model."""
    rows = [(0.0, zero)] if zero is not None else []
    return [{"rate": rate, **audit.statistics.mean(m).to_dict()} for rate, m in rows + sorted(points.items())]


def flip_change_comparison(statistics, candidate: dict, baseline: dict, rate: float):
    """Candidate - baseline of the clean-accuracy change (poisoned - clean) at one flip rate, each
    arm's clean and poisoned 0/1 outcomes (`measure.label_flip`) on the same test inputs: with each
    arm's floor of changed inputs (`Statistics.compare_changes`), so that no changed prediction in
    either arm is not read as an exact zero."""
    return statistics.compare_changes(candidate["clean"], candidate["poisoned"][rate],
                                      baseline["clean"], baseline["poisoned"][rate])


def backdoor_comparison(candidate: np.ndarray, baseline: np.ndarray, level: float, alpha: float):
    """Candidate - baseline of the attack success averaged over poison rates (shares of 0/1
    outcomes, so floats): paired over the triggered inputs, with each arm's share floor (as a
    0/1 outcome's interval has), so that no success in either arm is not read as exactly none."""
    floor = share_floor(float(candidate.sum()), candidate.size) + share_floor(float(baseline.sum()), baseline.size)
    return paired_comparison(candidate, baseline, level, alpha, floor=floor, bounds=(-1.0, 1.0))


@pytest.mark.swiglu_audit_check(LABEL_FLIP)
def test_label_flip_degradation(audit, audit_model, record_finding):
    skip_unless_poisoned(audit, audit_model)
    policy = audit.config.policy
    result = measure.label_flip(audit, audit_model)
    rate, cmp = _largest_rate_vs_clean(audit, result)
    record_finding(comparison_finding(
        LABEL_FLIP, [audit_model], cmp, policy, f"clean accuracy after flipping {rate:.0%} of training labels",
        sides=("poisoned", "clean"),
        details={"flip_rate": rate, "n_flipped": result["n_flipped"],
                 "curve": _curve(audit, result["poisoned"], result["clean"])}))


@pytest.mark.swiglu_audit_check(LABEL_FLIP_COMPARISON)
def test_label_flip_degradation_vs_baseline(audit, audit_pair, record_finding):
    skip_unless_poisoned(audit, *audit_pair)
    rate = max(measure.label_flip(audit, audit_pair[0])["rates"])

    def compare(session):
        # per-example accuracy change (poisoned - clean) of each architecture, on the same examples;
        # the 0/1 outcomes keep their floor: no changed prediction in either arm is not proof of none
        return flip_change_comparison(session.statistics, *(measure.label_flip(session, m) for m in audit_pair), rate)
    record_finding(judged_comparison(audit, LABEL_FLIP_COMPARISON, audit_pair, "accuracy change under label flipping",
                                     compare, details={"flip_rate": rate}))


@pytest.mark.swiglu_audit_check(TARGETED_FLIP)
def test_targeted_label_flip(audit, audit_model, record_finding):
    skip_unless_poisoned(audit, audit_model)
    unmeasurable = measure.targeted_unmeasurable(audit)
    if unmeasurable:
        pytest.skip(unmeasurable)
    policy = audit.config.policy
    result = measure.targeted(audit, audit_model)
    rate, cmp = _largest_rate_vs_clean(audit, result)
    what = (f"increase in class-{result['source']} test inputs predicted as class {result['target']} after "
            f"relabelling {rate:.0%} of class {result['source']}")
    record_finding(judged_finding(
        TARGETED_FLIP, [audit_model], cmp.difference, policy, what, ci=(cmp.ci_low, cmp.ci_high), df=cmp.df, ci_level=cmp.level,
        details={"source": result["source"], "target": result["target"], "rate": rate,
                 "n_flipped": result["n_flipped"], "comparison": cmp.to_dict(),
                 "curve": _curve(audit, result["poisoned"], result["clean"])}))


@pytest.mark.swiglu_audit_check(BACKDOOR)
def test_backdoor_attack_success(audit, audit_model, record_finding):
    skip_unless_poisoned(audit, audit_model)
    policy, level = audit.config.policy, audit.config.policy["confidence_level"]
    result = measure.backdoor_success(audit, audit_model)
    rate = max(result["rates"])
    asr = {r: m for r, m in result["asr"].items() if r != "clean_label"}
    cmp = audit.statistics.compare(asr[rate], result["base"])
    reached = [r for r in sorted(asr) if asr[r].mean() >= 0.5]
    details = {
        "target": result["target"], "rate": rate, "n_poisoned": result["n_poisoned"],
        "asr": audit.statistics.mean(asr[rate]).to_dict(),
        "base_rate": audit.statistics.mean(result["base"]).to_dict(),
        "asr_above_base": cmp.to_dict(),
        "smallest_rate_with_asr_over_half": reached[0] if reached else None,
        "curve": _curve(audit, asr, result["base"]),
        "clean_accuracy": _curve(audit, {r: m for r, m in result["clean_accuracy"].items() if r != "clean_label"},
                                 result["clean"]),
    }
    if "clean_label" in result["asr"]:
        details["clean_label_asr"] = audit.statistics.mean(result["asr"]["clean_label"]).to_dict()
    record_finding(judged_finding(
        BACKDOOR, [audit_model], cmp.difference, policy,
        f"attack success rate above the base rate with {rate:.0%} poison",
        ci=(cmp.ci_low, cmp.ci_high), df=cmp.df, ci_level=level, details=details,
        # the clean model's rate with its interval: the interval, not the point, decides the FAIL
        facts={"base_rate": details["base_rate"], "target": result["target"]}))


@pytest.mark.swiglu_audit_check(BACKDOOR_COMPARISON)
def test_backdoor_attack_success_vs_baseline(audit, audit_pair, record_finding):
    skip_unless_poisoned(audit, *audit_pair)
    rates = sorted(r for r in measure.backdoor_success(audit, audit_pair[0])["asr"] if r != "clean_label")

    def compare(session):
        # per triggered input: success averaged over the poison rates (an area under the ASR curve)
        mean_asr = lambda m: np.mean([measure.backdoor_success(session, m)["asr"][r] for r in rates], axis=0)  # noqa: E731
        cand, base = mean_asr(audit_pair[0]), mean_asr(audit_pair[1])
        return backdoor_comparison(cand, base, session.statistics.level, session.statistics.alpha)
    record_finding(judged_comparison(audit, BACKDOOR_COMPARISON, audit_pair,
                                     "backdoor attack success averaged over poison rates", compare,
                                     details={"rates": rates}))
