"""The privacy suite's checks: how well membership inference tells a model's training records from
records it never saw, per model, and whether the SwiGLU candidate leaks more than each baseline.
The attacks are in `methods.privacy`."""

from __future__ import annotations

from ..verdicts.conditions import Ceiling, NoWorseThanBaseline, Status, capped
from ..verdicts.risk import CheckInfo

# An FPR of 1% needs at least 100 non-members: with fewer, the threshold lets no false positive
# through and the rate judged is the TPR at a smaller FPR, which flatters the model.
UNRESOLVED_FPR_CAP = capped("1% FPR not resolvable", ("n_non_members",), Status.WARN, lambda facts, policy: (
    f"only {facts['n_non_members']} non-members: an FPR of 1% cannot be resolved (the rate judged is at no false "
    "positive at all), so the finding cannot PASS; give a validation or test split of 100 records or more"
    if facts["n_non_members"] < 100 else None))

_LEAK_LESS = ("Regularise (weight decay, dropout, data augmentation), stop training before the training loss "
              "reaches zero (early stopping on a validation split), train on more data, or train with "
              "differential privacy (DP-SGD, e.g. Opacus) where the records are sensitive enough to pay its "
              "accuracy cost; measure again after.")

MEMBERSHIP_INFERENCE = CheckInfo(
    suite="privacy", check="membership_inference",
    title="Membership inference: can an attacker tell a training record from an unseen one?",
    metric="true-positive rate at 1% false-positive rate of RMIA (members vs non-members, equal numbers)",
    rmf=("MEASURE 2.10",), characteristic="privacy_enhanced", impact="high", attack_class="privacy",
    explanation="An attacker who holds a record and queries the model scores how much more likely the model "
                "finds the record's true label than reference models do (RMIA, Zarifzadeh et al. 2024; the "
                "reference models train with the harness's recipe on random halves of all the audit's "
                "records, so each record is in half of them). The finding is the share of training records "
                "the attacker identifies while wrongly accusing 1% of unseen ones (Carlini et al. 2022 on why "
                "the low-FPR end, not accuracy or AUROC, measures leakage), with its interval over seeds and "
                "resampled records (conditional on the reference models). The finding judges the stronger of "
                "RMIA and a loss-threshold attack (the baseline RMIA must beat); either is a lower bound on "
                "what a stronger attack can do. The details give the AUROC, the rate at 0.1% FPR (or at no "
                "false positive at all where too few unseen records resolve 0.1%), and each attack's figures.",
    mitigation=_LEAK_LESS,
    condition=Ceiling("max_mia_tpr_at_1pct_fpr", "TPR at 1% FPR", breached=Status.FAIL),
    modifiers=(UNRESOLVED_FPR_CAP,),
)

MEMBERSHIP_COMPARISON = CheckInfo(
    suite="privacy", check="membership_inference_vs_baseline",
    title="Membership leakage, SwiGLU candidate vs baseline",
    metric="difference of RMIA's TPR at 1% FPR (candidate - baseline; lower is better)",
    rmf=("MEASURE 2.10",), characteristic="privacy_enhanced", impact="moderate", attack_class="privacy",
    explanation="Does swapping in the candidate make the model remember its training records more? The same "
                "records and resamples for both models, each with its own reference models.",
    mitigation=_LEAK_LESS + " If the candidate alone leaks more, regularise it more than the baseline.",
    condition=NoWorseThanBaseline("max_mia_tpr_gap", higher_is_better=False),
)
