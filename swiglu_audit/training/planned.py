"""The declared cost of a job: what one suite's work on one model consists of, in units the plan
prices from each model's timed probe (a training step, an input-gradient pass over the attack
set, and units a suite times itself, such as a trigger-scan step).

Each suite declares its own work in its measurement module (`planned_work`, named in the suite
catalogue), next to the code that does it; the plan only prices and sums what is declared, so a
new suite or attack touches no planning code. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Trainings:
    """One purpose's trainings of a model: one per cache tag and seed (`seeds`), `epochs` each; with
    `patience`, they may stop early (counted at their full epochs: an upper bound)."""
    tags: list[str]
    epochs: int
    seeds: tuple[int, ...]
    patience: int = 0
    paired: bool = False  # tags[i] trains from seeds[i] alone (reference models), not every tag x seed
    examples: int | None = None  # the training set's size where it is not the training split's
    probe_examples: int = 0  # inputs each validation pass adds (the FFN-outlier probe of clean trainings)

    def steps_per_epoch(self, n_train: int, batch_size: int) -> int:
        return math.ceil((self.examples or n_train) / batch_size)

    def pairs(self) -> list[tuple[str, int]]:
        return list(zip(self.tags, self.seeds, strict=True)) if self.paired else [(t, s) for t in self.tags for s in self.seeds]

    @property
    def count(self) -> int:
        """How many trainings (untagged ones, never cached, once per seed)."""
        return len(self.pairs()) if self.tags else len(self.seeds)


@dataclass
class Work:
    """One suite's work on one model. Passes over data are counted in examples (a forward pass of
    one example costs about a third of a forward and backward one); the attacks in passes over the
    attack set, so that the plan can show them as such."""
    trainings: dict[str, Trainings] = field(default_factory=dict)  # purpose -> its trainings
    attack_gradient_passes: int = 0  # input-gradient passes over the attack set, all seeds together
    attack_forward_passes: int = 0  # forward-only passes over the attack set (query attacks)
    forward_examples: int = 0  # examples passed forward, besides the trainings and attacks
    gradient_examples: int = 0  # examples passed forward and backward, besides the trainings and attacks
    units: dict[str, int] = field(default_factory=dict)  # a unit the suite times itself (`Unit`) -> count


@dataclass(frozen=True)
class Unit:
    """A unit of work that is neither a training step nor an input-gradient pass, timed on a fresh
    copy of the model by the suite's own code (`run`), or, where unit costs are given rather than
    timed, estimated as `gradient_passes` input-gradient passes over the attack set."""
    name: str
    run: Callable[[], Any]
    gradient_passes: float
    cpu_threads: int = 0  # on a CPU, timed at this many threads (as the work runs); 0: the worker's
    per_run: float = 1.0  # units one call of `run` does: its time is divided by this (setup shared, as in the work)


@dataclass(frozen=True)
class Part:
    """A part of a suite's job on one model that can run on its own, before the rest of the job
    (a seed's attacks, say): a job of its own in the audit's graph, so that a cluster runs the
    parts side by side. `work` is its share of the suite's declared work."""
    name: str
    work: Work
    run: Callable[[], Any]
    after: tuple[str, ...] = ()  # parts of the same job that must have run first (what it reads)


def part_job(suite: str, part: str) -> str:
    """The name of a suite's part as a job of the audit's graph (and a key of the plan's
    `seconds_by_job`)."""
    return f"{suite}[{part}]"


def minus(whole: Work, parts: list[Work]) -> Work:
    """What is left of `whole` once `parts` (shares of it) are taken out. A share takes whole tags
    of a purpose (with all their seeds) and counts; anything in a share that is not in `whole`, or
    a count that would go below zero, is a mistake in the suite's declaration and raises."""
    taken = total(parts)
    for purpose, t in taken.trainings.items():
        if purpose not in whole.trainings or not set(t.tags) <= set(whole.trainings[purpose].tags):
            raise ValueError(f"a part declares trainings ({purpose}: {t.tags}) its suite's work does not hold")
    trainings = {}
    for purpose, t in whole.trainings.items():
        gone = set(taken.trainings[purpose].tags) if purpose in taken.trainings else set()
        kept = [i for i, tag in enumerate(t.tags) if tag not in gone]
        if len(kept) == len(t.tags):
            trainings[purpose] = t
        elif kept:
            trainings[purpose] = dataclasses.replace(t, tags=[t.tags[i] for i in kept],
                                                     seeds=tuple(t.seeds[i] for i in kept) if t.paired else t.seeds)
    rest = Work(trainings=trainings,
                attack_gradient_passes=whole.attack_gradient_passes - taken.attack_gradient_passes,
                attack_forward_passes=whole.attack_forward_passes - taken.attack_forward_passes,
                forward_examples=whole.forward_examples - taken.forward_examples,
                gradient_examples=whole.gradient_examples - taken.gradient_examples,
                units={k: v - taken.units.get(k, 0) for k, v in whole.units.items()})
    counts = [rest.attack_gradient_passes, rest.attack_forward_passes, rest.forward_examples, rest.gradient_examples]
    if min(counts + list(rest.units.values()), default=0) < 0 or set(taken.units) - set(whole.units):
        raise ValueError("the parts declare more work than their suite's whole")
    return rest


def total(works: list[Work]) -> Work:
    """The sum of several declarations of work (suites', or a suite's parts): a purpose that
    appears in several has its tags put together."""
    out = Work()
    for w in works:
        for purpose, trainings in w.trainings.items():
            if purpose in out.trainings:  # the same purpose in two shares: its tags together
                mine = out.trainings[purpose]
                trainings = dataclasses.replace(mine, tags=mine.tags + trainings.tags,
                                                seeds=mine.seeds + trainings.seeds if mine.paired else mine.seeds)
            out.trainings[purpose] = trainings
        out.attack_gradient_passes += w.attack_gradient_passes
        out.attack_forward_passes += w.attack_forward_passes
        out.forward_examples += w.forward_examples
        out.gradient_examples += w.gradient_examples
        for name, count in w.units.items():
            out.units[name] = out.units.get(name, 0) + count
    return out
