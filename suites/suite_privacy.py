"""Privacy suite: membership inference per model (RMIA with reference models, and the
loss-threshold baseline it must beat), and whether the SwiGLU candidate leaks more than each
baseline."""

import pytest

from swiglu_audit.checks.privacy import MEMBERSHIP_COMPARISON, MEMBERSHIP_INFERENCE
from swiglu_audit.measure import privacy as measure
from swiglu_audit.methods.privacy import FPRS, OFFLINE_A, resolvable
from swiglu_audit.verdicts.conditions import GOODNESS
from swiglu_audit.verdicts.risk import judged_finding
from swiglu_audit.verdicts.sequential import judged_comparison
from swiglu_audit.verdicts.stats import replicate_comparison, replicate_estimate, share_floor

JUDGED = f"tpr_at_{FPRS[0]:g}"


def _skip_out_of_scope(audit, model):
    why = measure.out_of_scope(audit, model)
    if why:
        pytest.skip(why)


def _estimate(audit, attack: dict, key: str):
    n = attack["n_members"]
    # a share of n_members: no resample spread is not proof of an exact rate
    floor = share_floor(float(attack[key].mean()) * n, n) if key.startswith("tpr") else 0.0
    return replicate_estimate(attack[key], attack[f"{key}_replicates"], n + attack["n_non_members"],
                              audit.statistics.level, bounds=(0.0, 1.0), floor=floor)


def _severity(audit, estimate) -> tuple[int, float]:
    """How bad one attack's estimate is for the membership ceiling: its status, then its value."""
    status = MEMBERSHIP_INFERENCE.condition.judge(estimate.value, audit.config.policy, "", None,
                                                  (estimate.ci_low, estimate.ci_high), estimate.level)[0]
    return GOODNESS.index(status), estimate.value


@pytest.mark.swiglu_audit_check(MEMBERSHIP_INFERENCE)
def test_membership_inference(audit, audit_model, record_finding):
    _skip_out_of_scope(audit, audit_model)
    result = measure.membership(audit, audit_model)
    rmia, loss = result["rmia"], result["loss"]
    # judged: the attack whose interval gives the worse verdict (then the larger estimate). Either
    # attack is a lower bound on what an attacker can do, so a PASS must hold for both intervals:
    # chosen on the point estimate, a PASS could rest on one attack while the other's interval
    # crossed the limit
    name, judged = max(((n, _estimate(audit, a, JUDGED)) for n, a in (("RMIA", rmia), ("the loss threshold", loss))),
                       key=lambda pair: _severity(audit, pair[1]))
    low_fpr = f"tpr_at_{FPRS[1]:g}"
    n_non = rmia["n_non_members"]
    details = {
        "attack": (f"RMIA (offline form over each record's OUT reference models, a = {OFFLINE_A}; gamma = 1: the "
                   "log ratio log Pr(x | model) - log Pr(x) ranks the records), and the loss threshold (the "
                   "logit-scaled margin of the true label); the finding judges the attack whose interval gives the worse "
                   "verdict"),
        "judged_attack": name, "n_members": rmia["n_members"], "n_non_members": n_non,
        "n_reference_models": result["n_references"],
        "references": "intervals are conditional on these reference models (their training noise is not resampled)",
        "rmia": {k: _estimate(audit, rmia, k).to_dict() for k in ("auroc", JUDGED, low_fpr)},
        "loss_threshold": {k: _estimate(audit, loss, k).to_dict() for k in ("auroc", JUDGED, low_fpr)},
        "low_fpr_resolvable": resolvable(FPRS[1], n_non), "judged_fpr_resolvable": resolvable(FPRS[0], n_non),
    }
    if not details["low_fpr_resolvable"]:
        details["low_fpr_note"] = (f"{n_non} non-members cannot resolve an FPR of {FPRS[1]:g}: the rate shown at "
                                   f"{FPRS[1]:g} is the TPR with no false positive at all")
    strong = replicate_comparison(rmia[JUDGED], rmia[f"{JUDGED}_replicates"], loss[JUDGED], loss[f"{JUDGED}_replicates"],
                                  rmia["n_members"] + n_non, audit.statistics.level,
                                  audit.statistics.alpha, bounds=(-1.0, 1.0))
    details["rmia_minus_loss_threshold"] = strong.to_dict()
    auroc = details["rmia"]["auroc"]["value"]
    record_finding(judged_finding(
        MEMBERSHIP_INFERENCE, [audit_model], judged.value, audit.config.policy,
        f"an attacker who holds a record tells it was in training with TPR {judged.value:.3f} at 1% FPR "
        f"({name}; RMIA with {result['n_references']} reference models: TPR {details['rmia'][JUDGED]['value']:.3f}, "
        f"AUROC {auroc:.3f}; loss threshold: TPR {details['loss_threshold'][JUDGED]['value']:.3f}; "
        f"{rmia['n_members']} training records against as many unseen ones; a stronger attack may find more)",
        ci=(judged.ci_low, judged.ci_high), df=judged.df, ci_level=judged.level, details=details,
        facts={"n_non_members": n_non}))


@pytest.mark.swiglu_audit_check(MEMBERSHIP_COMPARISON)
def test_membership_inference_vs_baseline(audit, audit_pair, record_finding):
    for model in audit_pair:
        _skip_out_of_scope(audit, model)

    def compare(session):
        a, b = (measure.membership(session, m)["rmia"] for m in audit_pair)
        n = a["n_members"]
        floor = sum(share_floor(float(x[JUDGED].mean()) * n, n) for x in (a, b))
        return replicate_comparison(a[JUDGED], a[f"{JUDGED}_replicates"], b[JUDGED], b[f"{JUDGED}_replicates"],
                                    n + a["n_non_members"], session.statistics.level, session.statistics.alpha,
                                    bounds=(-1.0, 1.0), floor=floor)
    record_finding(judged_comparison(audit, MEMBERSHIP_COMPARISON, audit_pair,
                                     "RMIA's TPR at 1% FPR (membership leakage)", compare))
