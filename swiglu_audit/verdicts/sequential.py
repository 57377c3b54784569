"""`seeds = "auto"`: the looks of a sequential comparison, and the level each look is judged at.

An audit with `seeds = "auto"` judges each comparison at the configured seeds and, where it is
still inconclusive, trains more seeds of the two architectures and judges it again, up to
`max_seeds`. Looking again until the answer suits is how a sequential design inflates its error,
so the error is split: with K planned looks each interval is read at level 1 - (1 - level) / K
(Bonferroni over the looks). Whatever the stopping, the chance that any look's interval misses
the true difference is then at most 1 - level, so a false PASS (or a false FAIL) at the tolerance
stays at most (1 - level) / 2 <= alpha. Group-sequential boundaries (Pocock, O'Brien-Fleming) spend
the error more cleverly, but they assume a normal statistic with known information at each look,
which a t-interval at 2 to 8 seeds does not give; Bonferroni needs no such assumption.

The looks grow by about 1.6 times (3 -> 5 -> 8), so a handful of looks reaches max_seeds and
the split stays small. `bench/bench_interval_coverage.py --sequential` measures the result.
Torch-free.
"""

from __future__ import annotations

import time


def looks_for(start: int, max_seeds: int) -> list[int]:
    """The seed counts per architecture at which a comparison is judged: the configured count,
    then about 1.6 times more each time (at least 2 more), ending at `max_seeds`."""
    if start < 1 or max_seeds < start:
        raise ValueError(f"need 1 <= start <= max_seeds, got start={start}, max_seeds={max_seeds}")
    looks = [start]
    while looks[-1] < max_seeds:
        looks.append(min(max_seeds, max(looks[-1] + 2, round(looks[-1] * 1.6))))
    return looks


def look_level(level: float, n_looks: int) -> float:
    """The confidence level of each look's interval so that all looks together keep `level`."""
    if not 0 < level < 1 or n_looks < 1:
        raise ValueError(f"need 0 < level < 1 and n_looks >= 1, got {level}, {n_looks}")
    return 1 - (1 - level) / n_looks


def judged_comparison(audit, info, models, what: str, compare, details: dict | None = None,
                      aspect: str | None = None, sides: tuple[str, str] = ("candidate", "baseline"), facts=None):
    """A comparison finding judged by its check's condition; with seeds = "auto", judged again at
    more seeds while it stays inconclusive (WARN), each look at the level that keeps the overall
    error at 1 - level. `compare(session)` computes the Comparison from a session's models.

    The looks stop at the first decision (PASS or FAIL), at `max_seeds`, when the audit's time
    budget (`max_minutes`) is spent, or when no number of seeds can decide it
    (`Comparison.seeds_cannot_decide`). Models with pretrained weights have no seeds to add. The
    finding's `details.sequential` lists each look: seeds, interval, status and seconds.

    The check's modifiers judge after the last look, on `facts(session)` of that look's session:
    what they read (masking checks, seeds that missed a target) must come from the same seeds as
    the interval they qualify."""
    from .risk import Status, apply_modifiers, comparison_verdict

    def modified(finding):
        return apply_modifiers(info, finding, facts(final_session(audit, finding)) if facts else None, config.policy)

    config = audit.config
    start = len(config.seeds)
    fixed = any(bool(audit.zoo.spec(m).weights) for m in models)
    if not config.auto_seeds or fixed or config.statistics.max_seeds <= start:
        return modified(comparison_verdict(info, models, compare(audit), config.policy, what, details, aspect, sides))
    looks = looks_for(start, config.statistics.max_seeds)
    level = look_level(audit.statistics.level, len(looks))
    history: list[dict] = []
    stopped = "decided"
    for i, n_seeds in enumerate(looks):
        began = time.perf_counter()
        comparison = compare(audit.at_look(n_seeds, level))
        finding = comparison_verdict(info, models, comparison, config.policy, what, details, aspect, sides)
        history.append({"seeds": n_seeds, "ci": [comparison.ci_low, comparison.ci_high], "status": finding.status,
                        "seconds": round(time.perf_counter() - began, 3)})
        if finding.status != Status.WARN.value:
            break
        # where how it was measured keeps it open at any seed count (compute to target between
        # two curve points, a seed that missed its target), more seeds would be trained for nothing
        cannot = comparison.seeds_cannot_decide(config.policy[info.condition.key], info.condition.higher_is_better)
        if cannot:
            stopped = f"no number of seeds decides it: {cannot}"
            break
        if i == len(looks) - 1:
            stopped = "max_seeds reached"
        elif config.max_minutes and time.monotonic() - audit.started > 60 * config.max_minutes:
            stopped = "time budget (max_minutes) spent"
            break
    finding.details["sequential"] = {
        "looks": looks[:len(history)], "planned_looks": looks, "level_per_look": level,
        "rule": "Bonferroni over the planned looks", "history": history,
        "decided": finding.status in (Status.PASS.value, Status.FAIL.value), "stopped": stopped,
        "seeds_used": history[-1]["seeds"], "extra_seconds": round(sum(h["seconds"] for h in history[1:]), 3)}
    return modified(finding)


def final_session(audit, finding):
    """The session of a comparison's last look, the one its modifiers' facts are measured on."""
    looked = finding.details.get("sequential")
    return audit if not looked else audit.at_look(looked["seeds_used"], looked["level_per_look"])
