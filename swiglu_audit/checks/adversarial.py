"""The adversarial suite's checks: what each finding means, its NIST AI RMF tags and the condition
that judges it. The attacks themselves are in `methods.attacks`; the gradient-masking sanity
checks in `checks.sanity`."""

from __future__ import annotations

from ..methods.attack_registry import ATTACKS
from ..verdicts.conditions import DecisionTable, Floor, NoWorseThanBaseline, Rule, Status, always, capped, rejudged
from ..verdicts.risk import CheckInfo


def _masked_words(facts: dict, policy: dict) -> str | None:
    """Why a masked model's robustness number is not evidence of robustness."""
    failures, escalated = facts["masking_failures"], facts["escalation"]
    if not failures:
        return None
    tried = "; ".join(escalated.values()) if escalated else (
        "no stronger attack for this threat model (the escalation is Linf only)" if facts["threat"] == "l2" else "none")
    return (f"inconclusive: the gradient-masking sanity checks {', '.join(failures)} failed, so "
            "gradient-based attacks may be blind on this model and the number above is an upper bound; "
            f"escalated with: {tried}. Attack it adaptively (a bpda_forward stand-in for any "
            "non-differentiable step, EOT for randomness) before trusting it")


def _invalid_words(facts: dict, policy: dict) -> str | None:
    invalid = facts["invalid_examples"]
    if not (invalid["out_of_budget"] or invalid["non_finite"]):
        return None
    return (f"the attacks returned {invalid['out_of_budget']} example(s) outside the budget (projected back into "
            f"it and judged there) and {invalid['non_finite']} non-finite example(s) (counted as broken): an "
            "attack that leaves its budget is not behaving as specified, so this number needs a look")


def invalid_examples(costs_per_seed: list[list[dict]], attacks: list[str]) -> dict:
    """Adversarial examples the attacks returned outside their budget or non-finite, over seeds.
    A minimum-norm attack's (CW-L2) examples beyond the budget are counted apart: it is built to
    return them where it finds nothing closer, and each is projected into the budget and judged
    there like any other (before, they capped every full-profile L2 finding at WARN as an attack
    "not behaving as specified")."""
    costs = [c for seed_costs in costs_per_seed for c in seed_costs if c["attack"] in attacks]
    minimum_norm = lambda c: bool(c["attack"] in ATTACKS and ATTACKS[c["attack"]].minimum_norm)
    return {"out_of_budget": sum(c.get("out_of_budget", 0) for c in costs if not minimum_norm(c)),
            "non_finite": sum(c.get("non_finite", 0) for c in costs),
            "beyond_budget_minimum_norm": sum(c.get("out_of_budget", 0) for c in costs if minimum_norm(c))}


# masked evidence never passes (DESIGN.md section 8)
MASKED_MODEL_CAP = capped("masked model", ("masking_failures", "escalation", "threat"), Status.WARN, _masked_words)
INVALID_EXAMPLES_CAP = capped("examples outside the budget", ("invalid_examples",), Status.WARN, _invalid_words)


def _masked_pair(facts: dict) -> list[tuple[str, list[str]]]:
    return [(model, failed) for model, failed in facts["masked_models"].items() if failed]


def _masked_pair_words(facts: dict, policy: dict) -> str | None:
    masked = _masked_pair(facts)
    if not masked:
        return None
    (model, failed), others = masked[0], masked[1:]
    words = (f"inconclusive: {model}'s gradient-masking checks ({', '.join(failed)}) failed, so its "
             "robustness may be overstated and this comparison is not evidence either way")
    return "; ".join([words] + [_masked_note(m, f) for m, f in others])


def _masked_note(model: str, failed: list[str]) -> str:
    return f"note: {model}'s gradient-masking checks ({', '.join(failed)}) failed, so its robustness may be overstated"


def _masked_pair_note(facts: dict, policy: dict) -> str | None:
    return "; ".join(_masked_note(model, failed) for model, failed in _masked_pair(facts)) or None


# A comparison that involves a model whose gradient-masking checks fail is WARN at best, whichever
# way it points: that model's robustness is an upper bound, so neither a PASS nor the size of the
# difference rests on trustworthy evidence. A FAIL keeps its FAIL, with the note; in the worst-case
# comparison, a FAIL that rests on a masked baseline becomes WARN (MASKED_BASELINE_FAIL).
MASKED_PAIR_CAP = capped("masked model in the pair", ("masked_models",), Status.WARN, _masked_pair_words,
                         note=_masked_pair_note)

def _masked_baseline_fail(status, value, ci, facts, policy):
    """A FAIL says the candidate is less robust than the baseline by more than the tolerance. A
    masked baseline's robust accuracy is an upper bound, so the true difference (candidate -
    baseline) is at least the measured one, and may lie within the tolerance: that FAIL is not
    shown. (A masked candidate's FAIL stands: its true robustness is lower still.)"""
    failed = facts["masked_models"].get(facts["baseline"])
    if status is not Status.FAIL or not failed:
        return None
    return Status.WARN, (f"inconclusive, not FAIL: {facts['baseline']}'s gradient-masking checks ({', '.join(failed)}) "
                         "failed, so its robustness is an upper bound and the candidate's true deficit may be smaller "
                         "than measured; attack the baseline adaptively before reading this as a FAIL")


MASKED_BASELINE_FAIL = rejudged("masked baseline", ("masked_models", "baseline"), _masked_baseline_fail)

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
    modifiers=(MASKED_MODEL_CAP, INVALID_EXAMPLES_CAP),
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
    modifiers=(MASKED_PAIR_CAP, MASKED_BASELINE_FAIL),
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
    modifiers=(MASKED_PAIR_CAP,),
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
    # each registered sanity check (`checks.sanity`) measures `passed` and says why in `sentence`
    condition=DecisionTable(
        threshold=lambda facts, policy: facts["question"] + (
            f" (tolerance {facts['tolerance_key']} = {policy[facts['tolerance_key']]})" if facts["tolerance_key"] else ""),
        rules=(Rule(Status.WARN, lambda facts, policy: facts["passed"] is None, lambda facts, policy: facts["sentence"]),
               Rule(Status.PASS, lambda facts, policy: facts["passed"], lambda facts, policy: facts["sentence"]),
               Rule(Status.FAIL, always, lambda facts, policy: facts["sentence"]))),
)
