"""Membership inference: can an attacker who holds a record tell whether it was in training?

Reported as the field reports it (Carlini et al., "Membership Inference Attacks From First
Principles", 2022): the true-positive rate at a low false-positive rate (1% and 0.1%) and the
AUROC, members against non-members in equal numbers.

Two attacks:
- the baseline, a loss threshold (Yeom et al. 2018): the model's probability of the true label,
  higher for members;
- RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", 2024), which
  calibrates each record by reference models trained on random halves of the population:
  Pr(x | target) / Pr(x), where Pr(x) is the mean over the reference models of their probability
  of x's true label (the online form: each record is in about half of the references' training
  sets). RMIA compares that ratio with the ratios of population records z, and with its threshold
  gamma = 1 the pairwise test ranks the records as the ratio itself does, so the ratio is the score
  here (every metric below depends on the ranking only). It needs few reference models: the paper
  reports most of its power with one or two.
Torch-free.
"""

from __future__ import annotations

import numpy as np

FPRS = (0.01, 0.001)
_TINY = 1e-12


def member_split(n_train: int, n_pool: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training-set positions of the members, pool positions of the non-members), in equal
    numbers: the smaller side whole, the larger drawn at random."""
    rng = np.random.default_rng(seed)
    n = min(n_train, n_pool)
    members = np.sort(rng.choice(n_train, n, replace=False)) if n_train > n else np.arange(n_train)
    non_members = np.sort(rng.choice(n_pool, n, replace=False)) if n_pool > n else np.arange(n_pool)
    return members, non_members


def reference_halves(n_population: int, n_references: int, seed: int) -> np.ndarray:
    """(references x population) boolean: the random half of the population each reference model
    trains on. Pairs of references take complementary halves, so every record is in exactly half
    of an even number of references."""
    rng = np.random.default_rng(seed)
    halves = np.zeros((n_references, n_population), dtype=bool)
    for k in range(0, n_references, 2):
        order = rng.permutation(n_population)
        halves[k, order[: n_population // 2]] = True
        if k + 1 < n_references:
            halves[k + 1] = ~halves[k]
    return halves


def rmia_scores(target_probability: np.ndarray, reference_probability: np.ndarray) -> np.ndarray:
    """(seeds x records) Pr(x | target) / Pr(x), Pr(x) the mean over the references (K x records)."""
    marginal = np.asarray(reference_probability, dtype=float).mean(0)
    return np.asarray(target_probability, dtype=float) / np.maximum(marginal, _TINY)


def auroc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """P(member score > non-member score), ties counting one half (Mann-Whitney)."""
    scores = np.concatenate([member_scores, non_member_scores])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    m, n = len(member_scores), len(non_member_scores)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray, fpr: float) -> float:
    """The share of members scored above the threshold that lets through at most `fpr` of the
    non-members (strictly above it; with fewer than 1/fpr non-members, no false positive at all)."""
    allowed = int(np.floor(fpr * len(non_member_scores)))
    threshold = np.sort(non_member_scores)[::-1][allowed]  # the (allowed + 1)-th largest
    return float((member_scores > threshold).mean())


def resolvable(fpr: float, n_non_members: int) -> bool:
    """Can `fpr` be told apart from no false positive at all with this many non-members?"""
    return fpr * n_non_members >= 1


def attack_metrics(scores: np.ndarray, is_member: np.ndarray, n_boot: int, seed: int) -> dict:
    """Per seed of a (seeds x records) score matrix: AUROC and the TPR at each of FPRS, and each
    on `n_boot` resamples of the records (members and non-members resampled apart, so each keeps
    its count; the same resamples for every model scored on these records): {metric: seeds},
    {metric + "_replicates": seeds x B}."""
    scores = np.atleast_2d(scores)
    is_member = np.asarray(is_member, dtype=bool)
    members, non_members = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    rng = np.random.default_rng(seed)
    draws = [(members[rng.integers(0, len(members), len(members))],
              non_members[rng.integers(0, len(non_members), len(non_members))]) for _ in range(n_boot)]

    def metrics(row: np.ndarray, m_idx: np.ndarray, n_idx: np.ndarray) -> dict:
        out = {"auroc": auroc(row[m_idx], row[n_idx])}
        out.update({f"tpr_at_{fpr:g}": tpr_at_fpr(row[m_idx], row[n_idx], fpr) for fpr in FPRS})
        return out

    per_seed = [metrics(row, members, non_members) for row in scores]
    keys = list(per_seed[0])
    out: dict = {k: np.array([p[k] for p in per_seed]) for k in keys}
    for k in keys:
        out[f"{k}_replicates"] = np.empty((len(scores), n_boot))
    for b, (m_idx, n_idx) in enumerate(draws):
        for s, row in enumerate(scores):
            for k, v in metrics(row, m_idx, n_idx).items():
                out[f"{k}_replicates"][s, b] = v
    out["n_members"], out["n_non_members"] = len(members), len(non_members)
    return out
