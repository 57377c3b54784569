"""Confidence intervals over seeds and examples, and comparisons between architectures.

Per-example results of one model are a (seeds x examples) matrix. Two sources of chance make its
mean uncertain: which training runs (seeds) and which test examples. The audit has few seeds (2 to
5) and many examples, and a percentile bootstrap over 2 or 3 seed values is far too narrow (at 3
seeds it called a non-existent difference significant in about a fifth of simulated cases). So
intervals are t-intervals whose variance is split into its parts and whose degrees of freedom
follow the part that dominates (Welch-Satterthwaite):

    Var(mean) = sigma_seed^2 / S + Var(example mean)

- the seed part is estimated from the per-seed values (S - 1 degrees of freedom), after removing
  the share of their spread that is example-by-seed noise (counted once, in the example part), and
- the example part from the spread over examples (n - 1 degrees of freedom).

With seeds dominant and 2 seeds this is a t-interval with about 1 degree of freedom (wide, as it
must be); with examples dominant it is the usual paired interval over examples. Two architectures
measured on the same examples are compared by the difference of their means: the example part is
taken from the per-example differences (the pairing over examples is real, it is the same
examples), while seeds are treated as independent between architectures. Seeds are *not* paired:
the same seed number gives two architectures different initialisations, so nothing pairs them, and
an unpaired analysis stays valid (conservative) where runs of one seed do share a data order.

Metrics that are not means over examples (AUROC, AURC) take the example part from bootstrap
replicates over examples, with the same example resamples for every seed and both architectures
(`replicate_estimate`, `replicate_comparison`). Seed-level metrics (steps to a target, memory) are
(seeds x 1) matrices: the example part is zero and the interval is Welch's.

The p-value of "no difference" uses the same standard error and degrees of freedom as the
interval, so with alpha = 1 - level, p < alpha exactly when the interval excludes 0. The coverage
of these intervals at 2, 3 and 5 seeds is simulated by `bench/bench_interval_coverage.py` (table in
BENCHMARKS.md).

`Comparison.seeds_to_decide` is the matching power estimate for the audit's verdicts: how many
seeds per architecture would move the interval clear of the tolerance on one side (power 0.8 if
the true difference is the observed one), or why no number of seeds can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import special as _scipy_special


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    level: float
    n_seeds: int
    n_examples: int
    # the interval's degrees of freedom (Welch-Satterthwaite; inf: normal): a later run's
    # two-run test needs them to read the interval back as a standard error
    df: float | None = None
    # the t-interval's standard error where an end was moved past that interval (a 0/1 mean's
    # log-odds reach): the two-run test reads it, not the moved end; None: the width tells it
    se: float | None = None

    def to_dict(self) -> dict:
        return {k: _finite_or_none(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class Comparison:
    candidate: float
    baseline: float
    difference: float  # candidate - baseline
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, "no difference", same standard error and df as the interval
    level: float
    alpha: float
    n_seeds: int  # the smaller seed count of the two architectures
    n_examples: int
    # variance parts (None where unknown): the two architectures' between-seed variances of one
    # seed's value, summed; and the variance of the mean difference due to the examples
    seed_variance: float | None = None
    example_variance: float | None = None
    df: float | None = None  # Welch-Satterthwaite degrees of freedom of the interval
    # where each seed's value is known only to lie between two measured points (compute to a
    # target, read off a learning curve): the range the difference can take from those brackets
    # alone, whatever the seeds' spread (`bracketed_relative_comparison`)
    bracket: tuple[float, float] | None = None
    # why no number of seeds can decide it whatever the tolerance (a seed that never reached a
    # target has no upper end), or None
    undecidable: str | None = None

    def seeds_cannot_decide(self, tolerance: float, higher_is_better: bool = True) -> str | None:
        """Why no number of seeds would decide this comparison against the tolerance, where that
        follows from how it was measured (the curve's points, a seed that missed its target);
        None otherwise. A sequential audit stops adding seeds for it (`sequential`)."""
        if self.undecidable:
            return self.undecidable
        bound = -tolerance if higher_is_better else tolerance
        if self.bracket is not None and self.bracket[0] <= bound <= self.bracket[1]:
            return ("the learning curve's points (at powers of two and each epoch's end) lie too far apart around "
                    "the target: the difference could lie on either side of the tolerance whatever the number of "
                    "seeds")
        return None

    def seeds_to_decide(self, tolerance: float, higher_is_better: bool = True, power: float = 0.8,
                        max_seeds: int = 1000) -> tuple[int | None, str]:
        """Seeds per architecture at which the interval would lie wholly on one side of the
        tolerance, if the true difference were the observed one (normal approximation, power
        `power`). None with the reason when no seed count does it."""
        if self.seed_variance is None or self.example_variance is None:
            return None, "add seeds or examples (the variance parts of this metric are not estimated)"
        if self.n_seeds < 2:
            return None, "one seed per architecture: the seed-to-seed variance cannot be estimated; use 3 or more"
        cannot = self.seeds_cannot_decide(tolerance, higher_is_better)
        if cannot:
            return None, cannot
        bound = -tolerance if higher_is_better else tolerance
        margin = abs(self.difference - bound)
        if self.bracket is not None:
            margin = min(abs(self.bracket[0] - bound), abs(self.bracket[1] - bound))
        z = NormalDist().inv_cdf(1 - (1 - self.level) / 2) + NormalDist().inv_cdf(power)
        if margin < 1e-9:
            return None, "the estimate sits on the tolerance: no number of seeds decides it"
        if self.example_variance >= (margin / z) ** 2:
            return None, (f"more test examples needed: with {self.n_examples} examples the example-to-example "
                          "noise alone keeps the interval across the tolerance, whatever the number of seeds")
        for seeds in range(self.n_seeds + 1, max_seeds + 1):
            # t, not z: at a few seeds the seed part's own uncertainty widens the interval
            seed_part = self.seed_variance / seeds
            var = seed_part + self.example_variance
            df = var ** 2 / ((seed_part ** 2 / (2 * (seeds - 1)) if seed_part > 0 else 0.0)
                             + self.example_variance ** 2 / max(1, self.n_examples - 1)) if var > 0 else math.inf
            crit = _t_quantile(1 - (1 - self.level) / 2, df) + NormalDist().inv_cdf(power)
            if crit * math.sqrt(var) <= margin:
                return seeds, ""
        return None, f"more than {max_seeds} seeds per architecture"

    def seeds_needed(self, tolerance: float, power: float = 0.8, max_seeds: int = 1000) -> tuple[int | None, str]:
        """Seeds per architecture to detect a true difference of `tolerance` from zero (two-sided,
        the given power): the design question before an audit, not its verdict."""
        if self.seed_variance is None or self.example_variance is None:
            return None, "not estimated for this metric"
        if self.n_seeds < 2:
            return None, "one seed per architecture: the seed-to-seed variance cannot be estimated"
        if tolerance <= 0:
            return None, "no tolerance to detect"
        z = NormalDist().inv_cdf(1 - self.alpha / 2) + NormalDist().inv_cdf(power)
        budget = (tolerance / z) ** 2
        if self.example_variance >= budget:
            return None, (f"more test examples needed: with {self.n_examples} examples the example-to-example "
                          "noise alone hides a difference of this size, whatever the number of seeds")
        needed = max(2, math.ceil(self.seed_variance / (budget - self.example_variance)))
        return (needed, "") if needed <= max_seeds else (None, f"more than {max_seeds} seeds")

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha and not (self.ci_low <= 0.0 <= self.ci_high)

    def to_dict(self) -> dict:
        out = {k: _finite_or_none(v) for k, v in vars(self).items()}
        if self.bracket is not None:
            out["bracket"] = [_finite_or_none(v) for v in self.bracket]
        out["significant"] = self.significant
        return out


def _finite_or_none(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _as_matrix(values) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a (seeds x examples) matrix, got shape {m.shape}")
    _require_finite(m)
    return m


def _require_finite(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ValueError(f"{int((~np.isfinite(values)).sum())} of {values.size} measured values are NaN or "
                         "infinite: no interval can be computed; the model or the metric produced them")


def _t_interval(value: float, parts: list[tuple[float, ...]], level: float
                ) -> tuple[float, float, float, float, float]:
    """(low, high, two-sided p of value = 0, standard error, df) of a t-interval whose variance is
    a sum of independent parts. Each part is (its share of the variance, its degrees of freedom,
    the estimated quantity whose sampling error it carries[, its share as measured, where a floor
    raised it]); df by Welch-Satterthwaite."""
    var = sum(p[0] for p in parts if p[0] > 0)
    if var <= 0:  # no measured spread at all: the value is exact as far as this design can tell
        return value, value, (1.0 if value == 0 else 0.0), 0.0, math.inf
    # a part floored at 0 still carries its estimate's uncertainty into the df: otherwise the
    # interval would jump as a seed excess crosses 0 (too narrow just below it)
    df = _satterthwaite([(p[0], p[1], p[2]) for p in parts])
    # A floor raises a part's share above what was measured, and Welch-Satterthwaite's df grows as
    # a part with many df (the examples') comes to dominate: the floor would then narrow the very
    # interval it is there to widen (a label-flip comparison's went from df 1.3 to 15). So the df
    # is at most that of the parts as measured.
    measured = [(p[3], p[1], p[3]) if len(p) > 3 else (p[0], p[1], p[2]) for p in parts]
    if sum(v for v, _, _ in measured if v > 0) > 0:
        df = min(df, _satterthwaite(measured))
    se = math.sqrt(var)
    half = _t_quantile(1 - (1 - level) / 2, df) * se
    p = float(min(1.0, 2 * _t_tail(abs(value) / se, df)))
    return value - half, value + half, p, se, df


def _t_quantile(p: float, df: float) -> float:
    """Student's t quantile: scipy.stats.t.ppf's own kernel (bit-identical), without its argument
    handling, which cost about 0.1 ms a call; `seeds_to_decide` asks it once per seed count tried,
    thousands of times on a warm audit."""
    return float(_scipy_special.stdtrit(df, p))


def _t_tail(x: float, df: float) -> float:
    """P(T > x) for Student's t: scipy.stats.t.sf's kernel, as `_t_quantile`."""
    return float(_scipy_special.stdtr(df, -x))


def _satterthwaite(parts: Sequence[tuple[float, float, float]]) -> float:
    var = sum(v for v, _, _ in parts if v > 0)
    spread = sum(u ** 2 / d for _, d, u in parts if u > 0 and d > 0)
    return var ** 2 / spread if spread > 0 else math.inf  # spread underflows for rounding-level variances


def _seed_part(row_values: np.ndarray, interaction: float) -> tuple[float, float]:
    """(between-seed variance of one seed's value, the spread it was estimated from). The spread
    of the per-seed values less the share that is example-by-seed noise (counted once, in the
    example part), floored at 0. Its uncertainty is that of the whole spread (S - 1 degrees of
    freedom): with 2 seeds nobody can tell a small seed effect from none, and a df computed from
    the excess alone made the interval too narrow (coverage 0.90 at 2 seeds, simulated)."""
    if len(row_values) < 2:
        return 0.0, 0.0
    spread = float(np.var(row_values, ddof=1))
    return max(0.0, spread - interaction), spread


def _example_part(variance: float, n: int, measured: float | None = None) -> tuple[float, ...]:
    """The examples' part of `_t_interval`: `variance` after any floor, with n - 1 df, and the
    variance as `measured` where a floor raised it."""
    part: tuple[float, ...] = (variance, n - 1, variance)
    return part + (measured,) if measured is not None and measured < variance else part


def _seed_parts(seeds: tuple[float, float], n_seeds: int) -> tuple[float, float, float]:
    excess, spread = seeds
    return excess / n_seeds, n_seeds - 1, spread / n_seeds


def _interaction(m: np.ndarray) -> float:
    """Example-by-seed noise's share of the variance of one seed's mean: the residual mean
    square of the two-way layout, divided by the number of examples."""
    s, n = m.shape
    if s < 2 or n < 2:
        return 0.0
    resid = m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + m.mean()
    return float((resid ** 2).sum() / ((s - 1) * (n - 1))) / n


def _binary(values) -> bool:
    """Per-example outcomes (correct, robust, flipped) arrive as booleans. Judged by the type,
    not the values: a ratio that happens to be exactly 1 everywhere is no outcome."""
    return np.asarray(values).dtype == np.bool_


def _clip(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """An interval cut to the values the quantity can take (a share lies in [0, 1]): the truth
    lies inside them, so cutting loses no coverage and keeps the report readable."""
    return (lo, hi) if bounds is None else (max(lo, bounds[0]), min(hi, bounds[1]))


def mean_interval(values, level: float = 0.95) -> Estimate:
    """Mean of a (seeds x examples) matrix with a t-interval over seeds and examples (cut to
    [0, 1] for 0/1 outcomes)."""
    m, binary = _as_matrix(values), _binary(values)
    s, n = m.shape
    seeds = _seed_part(m.mean(1), _interaction(m))
    measured = float(np.var(m.mean(0), ddof=1)) / n if n > 1 else 0.0
    # every outcome 0 (or 1) is not proof of a rate of exactly 0: at least the variance of an
    # Agresti-Coull proportion over all outcomes (about the rule of three's reach), and at least two
    # pseudo-examples' worth over the examples: the seeds see the same inputs, and an input one
    # seed's model gets wrong (or flips under float16) tends to go wrong in the others', so zero
    # of 3 x 360 outcomes is evidence from 360 inputs, not from 1080
    floor = max(share_floor(float(m.sum()), m.size), _pseudo_example_floor(n))
    example_var = max(measured, floor) if binary else measured
    lo, hi, _, se, df = _t_interval(float(m.mean()), [_seed_parts(seeds, s), _example_part(example_var, n, measured)],
                                    level)
    reached = (lo, hi)
    if binary and s > 1:
        reached = _reach_toward_the_middle(m, lo, hi, example_var, measured, level)
    moved = reached != (lo, hi)
    lo, hi = _clip(*reached, (0.0, 1.0) if binary else None)
    return Estimate(float(m.mean()), lo, hi, level, s, n, df, se if moved else None)


# Below this many outcomes of the rarer kind (over all seeds) the log-odds of a seed's rate is
# mostly the half outcome that keeps it off the bound, and its interval is far too wide (a rate of
# 0.03 over 3 x 36 inputs: a median width of 0.28, against a t-interval of 0.17 that already
# covers); there the floors of the t-interval hold (bench/bench_change_floor_coverage.py).
MIN_EVENTS_FOR_LOG_ODDS = 10
# A seed with none of them has no log-odds the data can give: half an outcome over n + 1 would put
# it at a value that falls as n grows, and the interval would widen with more inputs (0, 0 and 12
# flips of 10000 reached 0.0157 where the t-interval says 0.0022). Every seed needs one.
MIN_EVENTS_PER_SEED = 1


def _reach_toward_the_middle(m: np.ndarray, lo: float, hi: float, example_var: float, measured: float,
                             level: float) -> tuple[float, float]:
    """A 0/1 mean's interval, its end toward 1/2 reaching at least as far as the same interval
    built on the log-odds of each seed's rate. Near 0 (or 1) a seed effect is skewed: one seed of
    three at 0.25 beside two at 0.03. With 2 or 3 seeds, draws that missed the high seed leave a
    t-interval whose upper end stops short of the true mean; simulated with a seed sd of 1 on the
    log-odds (bench/bench_change_floor_coverage.py), its upper end missed 9 to 12% of the time
    where it should miss 2.5%. On the log-odds the seeds' spread is nearer symmetric, so that
    interval's upper end reaches further toward the high seeds the draws missed (misses 5 to 6.5%:
    three seeds cannot show all of a skew). Only the end toward 1/2 is moved: the other end, near
    the bound, is the t-interval's (cut to [0, 1]), and where the seeds agree both intervals nearly
    coincide (medians up to 8% wider, simulated)."""
    s, n = m.shape
    per_seed = m.sum(1)
    rarer = per_seed if m.mean() < 0.5 else n - per_seed  # each seed's outcomes of the rarer kind
    if rarer.sum() < MIN_EVENTS_FOR_LOG_ODDS or rarer.min() < MIN_EVENTS_PER_SEED:
        return lo, hi
    rates = (m.sum(1) + 0.5) / (n + 1)  # each seed's rate, off the bounds by half an outcome
    log_odds = np.log(rates / (1 - rates))
    overall = (float(m.sum()) + 0.5) / (m.size + 1)
    scale = (overall * (1 - overall)) ** 2  # delta method: a share's variance over this is its log-odds'
    spread = float(np.var(log_odds, ddof=1))
    seeds = (max(0.0, spread - _interaction(m) / scale), spread)
    # the same parts as the t-interval's, on the log-odds (the examples' floor and its df cap included)
    low, high, _, _, _ = _t_interval(float(log_odds.mean()), [_seed_parts(seeds, s),
                                     _example_part(example_var / scale, n, measured / scale)], level)
    if m.mean() < 0.5:
        return lo, max(hi, float(_scipy_special.expit(high)))
    return min(lo, float(_scipy_special.expit(low))), hi


def share_floor(successes: float, n: float) -> float:
    """The least variance of a share measured on n examples: an Agresti-Coull share's, so that k
    of n right (0 or n included) is never read as exact."""
    p = (successes + 2) / (n + 4)
    return p * (1 - p) / n if n > 0 else 0.25


def within_model_difference(first, second, level: float = 0.95) -> Estimate:
    """Mean of first - second where both (seeds x examples) matrices are the same models'
    outcomes on the same examples (row k is seed k's model in both: the model before and after a
    change made to it, such as quantisation), with a t-interval over seeds and examples of the
    per-example differences. Unlike `paired_comparison`, whose arms are different architectures
    with unpaired seeds, seed k is paired with itself. For 0/1 outcomes no discordant pair at all
    is not proof of no difference: at least the variance of an Agresti-Coull share of changed
    examples (`_changed_examples_floor`: it counts examples, not seeds x examples, since the
    fragile examples that one seed's change flips tend to flip in every seed)."""
    a, b = _as_matrix(first), _as_matrix(second)
    if a.shape != b.shape:
        raise ValueError(f"a within-model difference needs the same seeds and examples: {a.shape} vs {b.shape}")
    binary = _binary(first) and _binary(second)
    m = a - b
    s, n = m.shape
    seeds = _seed_part(m.mean(1), _interaction(m))
    measured = float(np.var(m.mean(0), ddof=1)) / n if n > 1 else 0.0
    example_var = max(measured, _changed_examples_floor(m)) if binary else measured
    lo, hi, _, _, df = _t_interval(float(m.mean()), [_seed_parts(seeds, s), _example_part(example_var, n, measured)],
                                   level)
    lo, hi = _clip(lo, hi, (-1.0, 1.0) if binary else None)
    return Estimate(float(m.mean()), lo, hi, level, s, n, df)


def fixed_models_mean(values, level: float = 0.95) -> Estimate:
    """Mean of a (models x examples) matrix with a t-interval over the examples alone: for a
    question asked of the trained models audited, not of their architecture (does PGD at a huge
    budget bring these models to chance?), so their seeds are not a draw to generalise over, and
    two seeds' t quantile (12.7) would make every such check inconclusive. Each example's outcome
    is averaged over the models first: the examples, shared by every row, count once. For 0/1
    outcomes the variance is at least that of two pseudo-examples among n + 4
    (`_pseudo_example_floor`)."""
    m = _as_matrix(values)
    return _over_examples(m, _pseudo_example_floor(m.shape[1]) if _binary(values) else 0.0,
                          (0.0, 1.0) if _binary(values) else None, level)


def fixed_models_difference(first, second, level: float = 0.95) -> Estimate:
    """Mean of first - second, both the same trained models' (row k is model k in both) outcomes
    on the same examples, with a t-interval over the examples alone (`fixed_models_mean`: a
    question asked of these models, such as whether doubling PGD's iterations changed what it
    found on them). For 0/1 outcomes no discordant pair is not proof of no difference: at least
    the variance of an Agresti-Coull share of changed examples (`_changed_examples_floor`)."""
    a, b = _as_matrix(first), _as_matrix(second)
    if a.shape != b.shape:
        raise ValueError(f"a difference of the same models needs the same models and examples: {a.shape} vs {b.shape}")
    binary = _binary(first) and _binary(second)
    m = a - b
    if not binary:
        return _over_examples(m, 0.0, None, level)
    return _over_examples(m, _changed_examples_floor(m), (-1.0, 1.0), level)


def _pseudo_example_floor(n: int) -> float:
    """The least variance of a mean over n examples of 0/1 outcomes (or their changes): that of
    two pseudo-examples among n + 4 whose outcome differs from the rest in every model, as an
    Agresti-Coull share of none. It counts examples, not outcomes: the models see the same
    examples, so a second model adds none to the evidence; and it does not grow with the share
    seen, so that models which disagree on an example are not read as if they agreed."""
    p = 2 / (n + 4)
    return p * (1 - p) / n


def _over_examples(m: np.ndarray, floor: float, bounds: tuple[float, float] | None, level: float) -> Estimate:
    s, n = m.shape
    measured = float(np.var(m.mean(0), ddof=1)) / n if n > 1 else 0.0
    lo, hi, _, _, df = _t_interval(float(m.mean()), [_example_part(max(measured, floor), n, measured)], level)
    lo, hi = _clip(lo, hi, bounds)
    return Estimate(float(m.mean()), lo, hi, level, s, n, df)


def change_comparison(before_a, after_a, before_b, after_b, level: float = 0.95, alpha: float = 0.05) -> Comparison:
    """Candidate - baseline of the change a treatment makes to each (mean of after - before),
    where each architecture's before and after are the same models' 0/1 outcomes on the same
    examples (quantisation, say). As `paired_comparison` on the two change matrices, with each
    side's `within_model_difference` floor: two arms in which no outcome changed are not proof
    that neither changes."""
    for before, after in ((before_a, after_a), (before_b, after_b)):
        if np.shape(before) != np.shape(after):
            raise ValueError(f"each arm's before and after need the same seeds and examples: "
                             f"{np.shape(before)} vs {np.shape(after)}")
    change_a = _as_matrix(after_a) - _as_matrix(before_a)
    change_b = _as_matrix(after_b) - _as_matrix(before_b)
    binary = all(_binary(m) for m in (before_a, after_a, before_b, after_b))
    # the floor is one of changed 0/1 outcomes: other values' changes are measured, not floored
    floor = _changed_examples_floor(change_a) + _changed_examples_floor(change_b) if binary else 0.0
    return paired_comparison(change_a, change_b, level, alpha, bounds=(-2.0, 2.0) if binary else None, floor=floor)


def _changed_examples_floor(change: np.ndarray) -> float:
    """The least variance of the mean of a (models x examples) matrix of per-outcome changes
    (-1, 0, 1), so that no change seen is not read as no change possible: that of an Agresti-Coull
    share of changed examples, two pseudo-examples among n + 4. It counts examples, not outcomes:
    the models see the same examples, and an example one model's change flips (a fragile input)
    tends to flip in the others, so a second model does not double the evidence (counting
    outcomes made a 3-seed interval over zero changes 3x too narrow). A pseudo-example changes as
    much as the changed examples seen did, on average over the models (a change in one model of
    five moves an example's mean by 1/5); fully where none was seen."""
    n = change.shape[1]
    per_example = np.abs(change).mean(0)  # |changes| averaged: a +1 and a -1 do not cancel here
    changed = per_example[per_example != 0]
    size = float(np.mean(changed ** 2)) if len(changed) else 1.0
    # never below the floor of no change seen: one change seen in one model of three made the
    # pseudo-examples a ninth as large, an interval narrower than seeing none
    return max(size * (len(changed) + 2) / (n + 4) / n, _pseudo_example_floor(n))


def paired_comparison(candidate, baseline, level: float = 0.95, alpha: float = 0.05, *,
                      floor: float = 0.0, bounds: tuple[float, float] | None = None) -> Comparison:
    """Compare two (seeds x examples) matrices measured on the same examples. `floor`: the least
    example variance of the difference; `bounds`: the values it can take (0/1 outcomes: [-1, 1])."""
    a, b = _as_matrix(candidate), _as_matrix(baseline)
    binary = _binary(candidate) and _binary(baseline)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison needs the same examples: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    seeds_a, seeds_b = _seed_part(a.mean(1), _interaction(a)), _seed_part(b.mean(1), _interaction(b))
    measured = float(np.var(a.mean(0) - b.mean(0), ddof=1)) / n if n > 1 else 0.0
    # no discordant example at all is not proof of no difference: at least one pseudo-pair's worth
    example_var = max(measured, 1.0 / n ** 2) if binary else measured
    return _comparison(float(a.mean()), float(b.mean()), (seeds_a, a.shape[0]), (seeds_b, b.shape[0]),
                       max(example_var, floor), n, level, alpha, bounds or ((-1.0, 1.0) if binary else None), measured)


def _comparison(cand: float, base: float, seeds_a: tuple[tuple[float, float], int],
                seeds_b: tuple[tuple[float, float], int], example_var: float, n: int, level: float,
                alpha: float, bounds: tuple[float, float] | None = None,
                measured: float | None = None) -> Comparison:
    """`example_var` after any floor; `measured`, before it (None: no floor raised it)."""
    (parts_a, sa), (parts_b, sb) = seeds_a, seeds_b
    diff = cand - base
    lo, hi, p, _, df = _t_interval(diff, [_seed_parts(parts_a, sa), _seed_parts(parts_b, sb),
                                          _example_part(example_var, n, measured)], level)
    lo, hi = _clip(lo, hi, bounds)
    known = min(sa, sb) > 1
    return Comparison(cand, base, diff, lo, hi, p, level, alpha, min(sa, sb), n,
                      parts_a[0] + parts_b[0] if known else None, example_var, df)


def bracketed_relative_comparison(candidate, baseline, candidate_brackets, baseline_brackets,
                                  level: float = 0.95, alpha: float = 0.05,
                                  baseline_unbounded: bool = False, candidate_unbounded: bool = False) -> Comparison:
    """(candidate - baseline) / baseline of the seeds' means of a value read off a learning curve
    (compute to a target): `candidate` and `baseline` are each seed's reading (interpolated
    between two measured points), the brackets each seed's [low, high], the measured points
    around the crossing. An interval over the readings alone takes the straight line between
    points as the truth: as narrow as the seeds' spread, a point where they tie, and an error
    that no number of seeds shrinks (a concave curve's line overstates every crossing).

    So the interval has two parts:
    - the range of the ratio the brackets allow, [A_low / B_high, A_high / B_low] (A, B the arms'
      means of their lows and highs), which holds wherever in its bracket each crossing lies;
    - widened on each side by the t quantile times the standard error of the readings' ratio
      (the delta method at the least baseline and the largest candidate mean, Welch-Satterthwaite
      degrees of freedom): the seeds' own spread, read from the readings. That the interpolation
      moves one architecture's seeds alike (their curves have one shape) is the assumption; the
      bracket covers any such shift.
    The low end is cut at -1 (neither mean is negative). `baseline_unbounded`: a baseline seed
    that never reached the target has no upper end, so the candidate may be up to 100% cheaper
    (the range starts at -1). `candidate_unbounded`: a candidate seed that never reached it has
    no upper end either; its budget stands in for the high end, which is then no bound (the
    efficiency suite's censoring cap stops a PASS), and no number of seeds is offered. The
    estimate is the readings' ratio; the p-value of "no difference" is read from the range's end
    nearer 0, so it agrees with the interval."""
    read_a, read_b = np.asarray(candidate, float), np.asarray(baseline, float)
    arms = []
    for read, brackets in ((read_a, candidate_brackets), (read_b, baseline_brackets)):
        b = np.asarray(brackets, float)
        _require_finite(np.concatenate([read.ravel(), b.ravel()]))
        if read.ndim != 1 or read.size == 0 or b.shape != (read.size, 2):
            raise ValueError(f"a bracketed comparison needs one reading and one [low, high] per seed: "
                             f"{read.shape} vs {b.shape}")
        if (b[:, 0] > b[:, 1]).any() or (b[:, 0] < 0).any():
            raise ValueError("each seed's bracket needs 0 <= low <= high")
        arms.append(b)
    (a_lo, a_hi), (b_lo, b_hi) = (tuple(b.mean(0)) for b in arms)
    if b_lo <= 0 or read_b.mean() <= 0:
        raise ValueError("a relative difference needs a baseline above 0")
    low_point = -1.0 if baseline_unbounded else a_lo / b_hi - 1
    high_point = a_hi / b_lo - 1
    var_a = float(np.var(read_a, ddof=1)) if read_a.size > 1 else 0.0
    var_b = float(np.var(read_b, ddof=1)) if read_b.size > 1 else 0.0
    part_a = var_a / read_a.size / b_lo ** 2
    part_b = (a_hi / b_lo ** 2) ** 2 * var_b / read_b.size
    parts = [(v, n - 1, v) for v, n in ((part_a, read_a.size), (part_b, read_b.size)) if v > 0 and n > 1]
    var = sum(v for v, _, _ in parts)
    df = _satterthwaite(parts)
    se = math.sqrt(var)
    half = _t_quantile(1 - (1 - level) / 2, df) * se if se > 0 else 0.0
    gap = 0.0 if low_point <= 0 <= high_point else min(abs(low_point), abs(high_point))
    p = float(min(1.0, 2 * _t_tail(gap / se, df))) if se > 0 else (0.0 if gap > 0 else 1.0)
    ratio = float(read_a.mean() / read_b.mean())
    n_seeds = min(read_a.size, read_b.size)
    return Comparison(ratio, 1.0, min(max(ratio - 1, low_point), high_point),
                      max(-1.0, low_point - half), high_point + half, p, level, alpha, n_seeds, 1,
                      seed_variance=(part_a * read_a.size + part_b * read_b.size) if n_seeds > 1 else None,
                      example_variance=0.0, df=df, bracket=(float(low_point), float(high_point)),
                      undecidable=_unbounded_words(baseline_unbounded, candidate_unbounded))


def _unbounded_words(baseline: bool, candidate: bool) -> str | None:
    if not (baseline or candidate):
        return None
    which = " and ".join(arm for arm, missed in (("the candidate", candidate), ("the baseline", baseline)) if missed)
    return (f"a seed of {which} never reached the target within the recipe's budget: its value is only a lower "
            "bound, which more seeds do not lift; a longer recipe or a lower target would")


def replicate_estimate(per_seed, replicates, n_examples: int, level: float = 0.95,
                       bounds: tuple[float, float] | None = None, floor: float = 0.0) -> Estimate:
    """A seed-averaged metric that is not a mean over examples (AUROC, say): `per_seed` its value
    per seed, `replicates` (seeds x B) its value on B example resamples shared by all seeds;
    `bounds` the values the metric can take, if any; `floor` the least example variance the
    metric can have (resamples of a small group that is always right vary by nothing, which is
    no proof that it always is)."""
    p, r = np.asarray(per_seed, float), np.atleast_2d(np.asarray(replicates, float))
    _require_finite(p)
    _require_finite(r)
    s = len(p)
    seeds = _seed_part(p, _replicate_interaction(r))
    measured = float(np.var(r.mean(0), ddof=1))
    lo, hi, _, _, df = _t_interval(float(p.mean()), [_seed_parts(seeds, s),
                                                     _example_part(max(measured, floor), n_examples, measured)], level)
    lo, hi = _clip(lo, hi, bounds)
    return Estimate(float(p.mean()), lo, hi, level, s, n_examples, df)


def replicate_comparison(per_seed_a, replicates_a, per_seed_b, replicates_b, n_examples: int,
                         level: float = 0.95, alpha: float = 0.05,
                         bounds: tuple[float, float] | None = None, floor: float = 0.0) -> Comparison:
    """Candidate - baseline of a metric that is not a mean over examples; the replicates of both
    must come from the same example resamples (column b of each is resample b). `bounds`: the
    values the difference can take, if any; `floor`: the least example variance of the
    difference (as `replicate_estimate`'s)."""
    pa, ra = np.asarray(per_seed_a, float), np.atleast_2d(np.asarray(replicates_a, float))
    pb, rb = np.asarray(per_seed_b, float), np.atleast_2d(np.asarray(replicates_b, float))
    for values in (pa, ra, pb, rb):
        _require_finite(values)
    seeds_a, seeds_b = _seed_part(pa, _replicate_interaction(ra)), _seed_part(pb, _replicate_interaction(rb))
    measured = float(np.var(ra.mean(0) - rb.mean(0), ddof=1))
    return _comparison(float(pa.mean()), float(pb.mean()), (seeds_a, len(pa)), (seeds_b, len(pb)),
                       max(measured, floor), n_examples, level, alpha, bounds, measured)


def _replicate_interaction(r: np.ndarray) -> float:
    """Example-by-seed noise in one seed's value, from the replicates: how much one seed's
    replicate moves apart from the seed average's, scaled to one seed (S / (S - 1))."""
    s = r.shape[0]
    if s < 2:
        return 0.0
    return float(np.var(r - r.mean(0), axis=1, ddof=1).mean()) * s / (s - 1)


@dataclass(frozen=True)
class Statistics:
    """The audit's statistical settings in one place: the confidence level of the policy (alpha
    is 1 - level), and the bootstrap replicates and seed of [statistics] for metrics that are not
    means over examples. Suites estimate and compare through it, so no suite spells them."""

    level: float = 0.95
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0

    def mean(self, values) -> Estimate:
        return mean_interval(values, self.level)

    def compare(self, candidate, baseline) -> Comparison:
        return paired_comparison(candidate, baseline, self.level, self.alpha)

    def compare_shares(self, candidate, baseline) -> Comparison:
        """`compare` of per-example shares that are not 0/1 (an accuracy averaged over corruptions;
        a 0/1 outcome against such a share): their difference lies in [-1, 1], and its interval is
        cut there (2 seeds that disagree gave a df under 1 and an interval of +-41)."""
        return paired_comparison(candidate, baseline, self.level, self.alpha, bounds=(-1.0, 1.0))

    def compare_changes(self, before_a, after_a, before_b, after_b) -> Comparison:
        """Candidate vs baseline on the change a treatment makes to each: `change_comparison`."""
        return change_comparison(before_a, after_a, before_b, after_b, self.level, self.alpha)

    def difference(self, first, second) -> Estimate:
        """One set of models before and after a change: `within_model_difference`."""
        return within_model_difference(first, second, self.level)
