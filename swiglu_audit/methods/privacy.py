"""Membership inference: can an attacker who holds a record tell whether it was in training?

Reported as the field reports it (Carlini et al., "Membership Inference Attacks From First
Principles", 2022): the true-positive rate at a low false-positive rate (1% and 0.1%) and the
AUROC, members against non-members in equal numbers.

Two attacks:
- the baseline, a loss threshold (Yeom et al. 2018): the model's confidence in the true label,
  higher for members, as Carlini et al.'s logit-scaled margin z_y - logsumexp over the other
  classes (the ranking of the probability, without its rounding to 1 on confident records);
- RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", 2024), which
  calibrates each record by reference models trained on random halves of the population:
  Pr(x | target) / Pr(x), with the offline form of Pr(x): from the reference models whose half
  did not hold x (its OUT models; half of them), Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2, which
  stands in for the IN models an offline attacker lacks (a = OFFLINE_A, not tuned here). With
  few reference models the online form (the mean over all of them) fails: each record's one IN
  model gives every confident prediction the same Pr(x), member or not. RMIA compares the ratio
  with the ratios of population records z; with its threshold gamma = 1 that pairwise test ranks
  the records as the ratio itself does, so the ratio is the score here (every metric below depends
  on the ranking only). It needs few reference models: the paper reports most of its power with
  one or two.
Torch-free.
"""

from __future__ import annotations

import numpy as np

from . import ood_metrics, replicate_store

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


OFFLINE_A = 0.3  # RMIA's offline scaling of Pr_OUT(x) towards Pr(x)


def rmia_scores(target_log_probability: np.ndarray, reference_log_probability: np.ndarray,
                reference_trained_on: np.ndarray, a: float = OFFLINE_A) -> np.ndarray:
    """(seeds x records) log Pr(x | target) - log Pr(x), Pr(x) from the references (K x records)
    that did not train on the record (`reference_trained_on`: K x records, True where the half
    held it). In logs: a confident model's probability of the true label is 1 - 1e-9 or closer,
    which float32 and a plain ratio would round to a tie."""
    probability = np.exp(np.asarray(reference_log_probability, dtype=float))
    out = ~np.asarray(reference_trained_on, dtype=bool)
    if not out.any(0).all():
        raise ValueError("every record needs at least one reference model that did not train on it")
    p_out = (probability * out).sum(0) / out.sum(0)
    marginal = ((1 + a) * p_out + (1 - a)) / 2
    return np.asarray(target_log_probability, dtype=float) - np.log(np.maximum(marginal, _TINY))


def auroc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """P(member score > non-member score), ties counting one half (Mann-Whitney): the OOD
    metrics' AUROC with members as the positive side."""
    return ood_metrics.metric("auroc", member_scores, non_member_scores)


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
    {metric + "_replicates": seeds x B}. A resample is a count per record (`_resampled`)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    is_member = np.asarray(is_member, dtype=bool)
    out = replicate_store.replicates("privacy.attack_metrics", {"scores": scores, "is_member": is_member},
                                     {"n_boot": n_boot, "seed": seed},
                                     lambda: _attack_metrics(scores, is_member, n_boot, seed))
    return {k: (int(v) if k in ("n_members", "n_non_members") else v) for k, v in out.items()}


def _attack_metrics(scores: np.ndarray, is_member: np.ndarray, n_boot: int, seed: int) -> dict:
    members, non_members = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    rng = np.random.default_rng(seed)
    m_counts = _counts(rng.integers(0, len(members), (n_boot, len(members))), len(members))
    n_counts = _counts(rng.integers(0, len(non_members), (n_boot, len(non_members))), len(non_members))
    keys = ["auroc"] + [f"tpr_at_{fpr:g}" for fpr in FPRS]
    out: dict = {k: np.empty(len(scores)) for k in keys}
    out.update({f"{k}_replicates": np.empty((len(scores), n_boot)) for k in keys})
    for s, row in enumerate(scores):
        m_scores, n_scores = row[members], row[non_members]
        out["auroc"][s] = auroc(m_scores, n_scores)
        for fpr in FPRS:
            out[f"tpr_at_{fpr:g}"][s] = tpr_at_fpr(m_scores, n_scores, fpr)
        for k, v in _resampled(m_scores, n_scores, m_counts, n_counts).items():
            out[f"{k}_replicates"][s] = v
    out["n_members"], out["n_non_members"] = np.array(len(members)), np.array(len(non_members))
    return out


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each record is drawn in each resample."""
    counts = np.zeros((len(draws), n))
    np.add.at(counts, (np.repeat(np.arange(len(draws)), draws.shape[1]), draws.ravel()), 1.0)
    return counts


def _resampled(member_scores: np.ndarray, non_member_scores: np.ndarray, m_counts: np.ndarray,
               n_counts: np.ndarray) -> dict[str, np.ndarray]:
    """`auroc` and `tpr_at_fpr` on every resample at once, a resample being a count per record:
    the weighted AUROC of `ood_metrics` (ties a half); the TPR
    from each resample's threshold, its (floor(fpr n) + 1)-th largest drawn non-member score."""
    m, n = len(member_scores), len(non_member_scores)
    # the counts are the OOD metrics' resampling weights (memory B x (m + n))
    out = {"auroc": ood_metrics.weighted_auroc(member_scores, non_member_scores, m_counts, n_counts)}
    order = np.argsort(-non_member_scores, kind="mergesort")
    cumulative = np.cumsum(n_counts[:, order], axis=1)  # drawn non-members at or above each score, descending
    for fpr in FPRS:
        allowed = int(np.floor(fpr * n))
        threshold = non_member_scores[order][np.argmax(cumulative > allowed, axis=1)]
        out[f"tpr_at_{fpr:g}"] = ((member_scores[None, :] > threshold[:, None]) * m_counts).sum(1) / m
    return out
