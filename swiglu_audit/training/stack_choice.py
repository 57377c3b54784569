"""Whether the seeds of one model train stacked or one by one, here: timed, not assumed.

Stacking shares a training step's overhead among its members (the zoo's MLP at two threads:
1.2x faster at 3 seeds, 1.8x at 5; bench/stacked-cpu.json), but vmap runs some layers slower than
their lone kernels: a CIFAR-sized CNN's convolutions on a CPU trained 1.3 to 1.5 times slower
stacked (bench/stacked-usercnn-cpu.json, bench/stacking-choice-cpu.json). So the members' lone
trainings and their stacked training are timed on the same few batches, and a model whose stacked
steps take more than SLOWER_ABOVE times its lone ones, in two timings, trains one by one. A fixed
cost (building the optimiser, the first step's FLOP count) is taken out by timing a short and a
longer training and keeping the difference.

Why stacking stays the default below that margin, where it gains little (the zoo's MLP at one
thread, an xdist worker's share: 0.84 to 0.92 of the lone time): stacked and lone trainings agree
up to the rounding of batched kernels, not bit for bit, and comparisons that sit at their
tolerance follow that rounding (5 and 11 of 501 findings in bench/compare-stacked-*-standard.json).
A choice that flipped with timing noise from one run to the next would move them (it did, once,
before the second timing: the first model timed while the xdist workers were starting read 1.27x).
So a model's choice is kept in the cache for good (`Zoo.stacking_choice`): the same machine and
cache make the same choice every run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from .stacked import NotStackable, stackable, train_stacked
from .train import Recipe, train_model

SLOWER_ABOVE = 1.1  # stacked steps over 1.1 times the lone ones: clearly slower, beyond timing noise
SHORT_STEPS, LONG_STEPS = 2, 6  # the difference of the two trainings is LONG - SHORT steady steps
REPEATS = 2


@dataclass(frozen=True)
class StackChoice:
    stack: bool
    why: str  # in words, for the plan
    lone_step: float = 0.0  # seconds of one member's training step alone (0: not timed)
    stacked_step: float = 0.0  # seconds of one step of all members stacked (0: not timed)
    lasting: bool = True  # a timing or a refusal, worth keeping in the cache; not a stopgap answer
    members: int = 0  # how many were timed together (0: not timed)


def choose(lone_step: float, stacked_step: float, members: int) -> StackChoice:
    """The choice from the timed steps: one by one where `members` stacked take more than
    SLOWER_ABOVE times their time one by one; stacked otherwise."""
    ratio = stacked_step / max(members * lone_step, 1e-12)
    timed = f"{members} seeds stacked took {ratio:.2f}x the time of one by one (timed here)"
    if ratio > SLOWER_ABOVE:
        return StackChoice(False, f"trains one by one: {timed}", lone_step, stacked_step, members=members)
    return StackChoice(True, f"seeds stacked: {timed}", lone_step, stacked_step, members=members)


def time_stacking(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: int, batch_size: int,
                  device: torch.device, timed: bool = True) -> StackChoice:
    """Time `members` copies of `model` (fresh, untrained) trained one by one and stacked on the
    first batches of (x, y), and choose. A model that cannot stack trains one by one, and says why.
    `timed=False`: only a short stacked trial (refusing what cannot stack), stacked otherwise. The
    timing's own failures choose one by one, for this run only (`lasting` False)."""
    if members < 2:
        return StackChoice(False, "trains one by one: a single seed")
    why = stackable([model, model])
    if why:
        return StackChoice(False, f"trains one by one: {why}")
    batches = min(LONG_STEPS, len(x) // batch_size)
    if batches < 1:
        return StackChoice(True, "seeds stacked: the training set is smaller than a batch, not timed", lasting=False)

    def one_by_one(steps: int) -> float:
        started = time.perf_counter()
        for k in range(members):
            train_model(copy.deepcopy(model), x[:steps * batch_size], y[:steps * batch_size],
                        Recipe(epochs=1, batch_size=batch_size), k, device)
        return _elapsed(started, device)

    def stacked(steps: int) -> float:
        started = time.perf_counter()
        train_stacked([copy.deepcopy(model) for _ in range(members)], [x[:steps * batch_size]] * members,
                      [y[:steps * batch_size]] * members, Recipe(epochs=1, batch_size=batch_size),
                      list(range(members)), device)
        return _elapsed(started, device)

    try:
        stacked(min(SHORT_STEPS, batches))  # untimed: allocation and kernel choice; refuses what vmap cannot batch
        if not timed:
            return StackChoice(True, "seeds stacked (not timed)")
        if batches < SHORT_STEPS + 1:  # too few batches to time: overhead rules a set this small
            return StackChoice(True, "seeds stacked: the training set is too small to time them", lasting=False)
        one_by_one(SHORT_STEPS)
        steady = batches - SHORT_STEPS

        def timed_steps() -> StackChoice | None:
            # rounds that interleave the four trainings, so that a spell of other work on the
            # machine (xdist workers starting beside the plan's probe) falls on both ways alike;
            # the fastest of each: other work only ever adds time
            rounds = [(one_by_one(SHORT_STEPS), one_by_one(batches), stacked(SHORT_STEPS), stacked(batches))
                      for _ in range(REPEATS)]
            short_lone, long_lone, short_stacked, long_stacked = (min(r[i] for r in rounds) for i in range(4))
            if long_lone <= short_lone or long_stacked <= short_stacked:  # noise larger than the steps
                return None
            return choose((long_lone - short_lone) / (steady * members), (long_stacked - short_stacked) / steady, members)

        choice = timed_steps()
        if choice is not None and not choice.stack:  # one by one only if a second timing says so too
            try:
                again = timed_steps()
            except Exception:  # noqa: BLE001  the first timing stands
                again = None
            if again is not None:
                choice = min(choice, again, key=lambda c: c.stacked_step / c.lone_step)
        if choice is None:
            return StackChoice(True, "seeds stacked: the timing was lost in noise, not kept", lasting=False)
    except NotStackable as exc:
        return StackChoice(False, f"trains one by one: {exc}")
    except Exception as exc:  # noqa: BLE001  a model the timing cannot copy or train: alone, as before stacking
        return StackChoice(False, f"trains one by one: stacking could not be timed ({type(exc).__name__}: {exc})",
                           lasting=False)
    return choice


def _elapsed(started: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started
