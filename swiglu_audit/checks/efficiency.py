"""Efficiency claim: accuracy at matched parameters and the same training budget."""

from __future__ import annotations

from ..risk import CheckInfo, NoWorseThanBaseline

CLEAN_ACCURACY_COMPARISON = CheckInfo(
    suite="efficiency", check="clean_accuracy_vs_baseline",
    title="Clean accuracy at matched parameters and budget, SwiGLU candidate vs baseline",
    metric="clean accuracy difference", rmf=("MAP 3.1", "MEASURE 2.3"),
    characteristic="valid_reliable", impact="low",
    explanation="SwiGLU is adopted because it is claimed to reach better quality for the same "
                "parameters and compute. Both models here have (nearly) the same parameter count "
                "and the same training steps; the finding is the clean test accuracy difference.",
    mitigation="If the claim does not hold on your data, the switch buys no benefit to weigh "
               "against any robustness cost: keep the baseline.",
    condition=NoWorseThanBaseline("max_clean_accuracy_drop"),
)


def parameter_mismatch(n_candidate: int, n_baseline: int) -> float:
    """Relative difference of parameter counts, against the larger."""
    return abs(n_candidate - n_baseline) / max(n_candidate, n_baseline)
