"""The adversarial suite's checks: what each finding means, its NIST AI RMF tags and the condition
that judges it. The attacks themselves are in `methods.attacks`; the gradient-masking sanity
checks in `checks.sanity`."""

from __future__ import annotations

from ..risk import CheckInfo, Floor, NoWorseThanBaseline

_EVASION_MITIGATION = ("Adversarial training (PGD-AT, TRADES) in the candidate's recipe, input "
                       "preprocessing only with care for gradient masking, or certified methods "
                       "(randomised smoothing) where guarantees are needed.")

WORST_CASE = CheckInfo(
    suite="adversarial", check="worst_case_robust_accuracy",
    title="Worst-case robust accuracy within one threat model",
    metric="robust accuracy (worst case over the attacks of one threat model)", rmf=("MEASURE 2.7",),
    characteristic="secure_resilient", attack_class="evasion/white-box", impact="high",
    explanation="Share of test examples that every attack of one threat model (Linf at eps, or L2 "
                "at eps_l2; white-box and black-box) failed to misclassify: one number per threat "
                "model, comparable with AutoAttack and RobustBench figures for the same norm and "
                "budget. An example counts as robust only if all those attacks failed on it; the "
                "details name the attack that broke each example. For a model whose gradient-masking "
                "checks fail, stronger attacks are added and the finding is at best inconclusive.",
    mitigation=_EVASION_MITIGATION,
    condition=Floor("warn_below_robust_accuracy", "robust accuracy"),
)

WORST_CASE_COMPARISON = CheckInfo(
    suite="adversarial", check="worst_case_robust_accuracy_vs_baseline",
    title="Worst-case robust accuracy, SwiGLU candidate vs baseline", metric="robust accuracy difference",
    rmf=("MEASURE 2.7", "MAP 2.3"), characteristic="secure_resilient", attack_class="evasion/white-box",
    impact="high",
    explanation="Difference in worst-case robust accuracy (one threat model per finding) between the "
                "SwiGLU candidate and a baseline trained on the same data with the same budget, on the "
                "same examples.",
    mitigation="If the candidate is less robust, keep the baseline FFN for exposed models, or add "
               "adversarial training to the candidate's recipe and audit again.",
    condition=NoWorseThanBaseline("max_robust_accuracy_drop"),
)

TRANSFER = CheckInfo(
    suite="adversarial", check="transfer_attack_vs_baseline",
    title="Transfer attacks between the SwiGLU candidate and a baseline", metric="accuracy under transferred examples (difference)",
    rmf=("MEASURE 2.7",), characteristic="secure_resilient", attack_class="evasion/transfer", impact="moderate",
    explanation="PGD examples crafted on the baseline are fed to the candidate, and examples crafted on "
                "the candidate to the baseline; the finding compares the two accuracies. A transfer "
                "attacker needs no access to the deployed model, only to a similar one.",
    mitigation="Ensemble adversarial training; keep model weights and architecture details private.",
    condition=NoWorseThanBaseline("max_robust_accuracy_drop"),
)

SANITY = CheckInfo(
    suite="adversarial", check="evaluation_sanity", title="Gradient-masking and evaluation sanity check",
    metric="sanity statistic", rmf=("MEASURE 2.13", "MEASURE 2.7"), characteristic="secure_resilient",
    attack_class="evasion/white-box", impact="high",
    explanation="Checks that the robustness evaluation itself is trustworthy (Carlini et al. 2019, "
                "'On Evaluating Adversarial Robustness'; Athalye et al. 2018). A tripped check means "
                "gradient-based attacks may be failing for reasons other than robustness (masked or "
                "obfuscated gradients, probabilities instead of logits, randomness), so robust "
                "accuracy would be overstated.",
    mitigation="Treat the model's robust accuracy as unproven: use gradient-free and adaptive attacks "
               "(Square, BPDA, EOT), remove non-differentiable preprocessing from the audited "
               "forward pass, and make the model return logits.",
)
