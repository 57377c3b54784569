"""The zoo's stacked trainings: which models stack (timed, kept in the cache), and the trainings
of one model on several sets stacked as one (the poisoning suite's poisoned sets, the privacy
suite's reference models). `StackedTrainings` is a part of `zoo.Zoo`, kept apart for its size: its
methods read the zoo's cache, data, recipe and trained models, and store each stacked member
through `Zoo._train_one`, under its own key, as a lone training would be stored.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Callable

import torch
from torch import nn

from ..errors import CacheError
from . import batching, stack_choice
from .cache import cache_key
from .specs import ModelSpec
from .stack_choice import LONG_STEPS, StackChoice, time_stacking
from .stacked import stackable, train_stacked
from .train import Recipe


@dataclasses.dataclass(frozen=True)
class TrainingRequest:
    """Trainings of one model on one training set, for `train_together`: as `Zoo.models` takes them."""
    tag: str
    inputs: object  # a tensor, or a poisoned set whose rows are patched on the fly
    labels: torch.Tensor
    seeds: tuple[int, ...]
    fine_tune_epochs: int | None = None
    patience: int = 0


@dataclasses.dataclass(frozen=True)
class StackMember:
    """One training of a stacked model: a seed on a training set, from `start()` when fine-tuned."""
    tag: str
    seed: int
    inputs: object
    labels: torch.Tensor
    start: Callable[[], dict] | None = None


# A stack's members each hold their weights, AdamW moments and batches: a bound beside the memory's
MAX_STACKED_MEMBERS = 32


class _NotKept(Exception):
    """A stacking choice not worth keeping in the cache (`_timed_choice`)."""


# "0" trains every seed alone (for comparing stacked and lone runs); "1" stacks wherever the model
# can stack, untimed; unset (the default): the seeds stack unless timing shows them clearly slower
# stacked (training/stack_choice.py)
STACK_ENV = "SWIGLU_AUDIT_STACK"


def stacking_enabled() -> bool:
    return os.environ.get(STACK_ENV, "") != "0"


def stacking_forced() -> bool:
    return os.environ.get(STACK_ENV, "") == "1"


class StackedTrainings:
    """The stacking half of `zoo.Zoo` (module docstring)."""

    def train_together(self, name: str, requests: list[TrainingRequest]) -> None:
        """Train what these requests lack (trainings of one model on several training sets: the
        poisoning suite's sets, the privacy suite's reference models) as few stacked models as it
        can: the members that share a schedule (epochs, patience, fine-tuning) and a set length
        stack across sets, each member on its own set, where the model's seeds stack
        (`stacking_choice`). Each is stored under its own key and kept, so `models(name, tag=...)`
        then returns it as if it had trained it; whatever does not stack (or fails to) is left to
        `models`, which trains it alone."""
        spec = self.spec(name)
        if spec.weights or not self._stacking_on(spec):
            return
        groups: dict[tuple, list[tuple[TrainingRequest, int]]] = {}
        for request in requests:
            if (name, request.tag) in self._failed:  # it failed before: `models` reports that again
                continue
            known = self._trained.get((name, request.tag), {})
            for seed in request.seeds:
                if seed not in known:
                    schedule = (request.fine_tune_epochs, request.patience, len(request.labels))
                    groups.setdefault(schedule, []).append((request, seed))
        for (epochs, patience, _), wanted in groups.items():
            if len(wanted) < 2:
                continue
            try:  # a fine-tuning starts from the clean model of its seed
                clean = {m.seed: m for m in self.models(name)} if epochs else {}
            except Exception:  # noqa: BLE001  the clean model's own checks report its error
                continue
            members = [StackMember(r.tag, seed, r.inputs, r.labels,
                                   (lambda m=clean[seed]: m.module.state_dict()) if clean else None)
                       for r, seed in wanted]
            try:
                stacked = self._train_stacked(spec, members, epochs, patience)
            except Exception:  # noqa: BLE001  the model's own `models` calls meet it and report it
                continue
            for member in members:
                if (member.tag, member.seed) not in stacked:
                    continue
                try:
                    trained = self._train_one(spec, member.seed, member.inputs, member.labels, member.tag,
                                              member.start, epochs, patience, stacked[(member.tag, member.seed)])
                except Exception:  # noqa: BLE001  its own `models` call trains it alone and reports what fails
                    continue
                self._trained.setdefault((name, member.tag), {})[member.seed] = trained

    def _train_stacked(self, spec: ModelSpec, members: list[StackMember], epochs: int | None,
                       patience: int) -> dict[tuple[str, int], tuple[dict, dict]]:
        """The members (seeds of `spec`, each on its training set) not in the cache, trained as
        stacked models (training/stacked.py), as many to a stack as memory allows:
        {(tag, seed): (state, record)} for `_train_one` to store under each one's own key, so a
        stacked and a lone run share the cache. {} where fewer than two need training, stacking is
        off (SWIGLU_AUDIT_STACK=0), or the model cannot stack or was timed clearly slower stacked
        (each then trains alone)."""
        if len(members) < 2 or not self._stacking_on(spec):
            return {}
        recipe = dataclasses.replace(self.recipe, epochs=epochs or self.recipe.epochs, patience=patience)
        architecture, _ = self._architecture(spec)
        todo = [m for m in members
                if not self.cache.contains(self.training_key(spec, m.seed, m.tag, architecture, recipe))]
        if len(todo) < 2 or stackable([architecture, architecture]) is not None:
            return {}
        if not self.stacking_choice(spec).stack:  # it cannot, or was timed clearly slower stacked here
            return {}
        out: dict[tuple[str, int], tuple[dict, dict]] = {}
        stacks = math.ceil(len(todo) / self._stack_size(architecture))
        size = math.ceil(len(todo) / stacks)  # stacks of even sizes: 30 in two, as 15 and 15
        for first in range(0, len(todo), size):
            chunk = todo[first:first + size]
            if len(chunk) > 1:
                out.update(self._train_one_stack(spec, chunk, recipe))
        return out

    def _train_one_stack(self, spec: ModelSpec, chunk: list[StackMember], recipe: Recipe) -> dict[tuple[str, int], tuple[dict, dict]]:
        models = []
        for member in chunk:
            torch.manual_seed(member.seed)  # each member initialised as its lone training would be
            model = self.instantiate(spec).to(self.device)
            self._check_contract(model, spec)
            if member.start is not None:
                model.load_state_dict(member.start())
            models.append(model)
        if stackable(models) is not None:
            return {}
        sets = sorted({m.tag.split("-seed")[0] for m in chunk})  # tags without their cache suffix
        self.progress.update(f"training {spec.name}: {len(chunk)} models stacked ({', '.join(sets)[:120]})")
        try:
            records = train_stacked(models, [m.inputs for m in chunk], [m.labels for m in chunk], recipe,
                                    [m.seed for m in chunk], self.device, self.data.x_val, self.data.y_val,
                                    outliers=all(m.tag == "clean" for m in chunk))
        except FloatingPointError:  # a diverging training diverges alone too: let it say so there
            return {}
        except Exception:  # noqa: BLE001  NotStackable, or anything else the batched path meets: train alone
            return {}
        out = {}
        for member, model, record in zip(chunk, models, records):
            record["model"], record["tag"] = spec.name, member.tag
            out[(member.tag, member.seed)] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, record)
        return out

    def _stack_size(self, architecture: nn.Module) -> int:
        """How many members one stacked training may hold: each one's batch activations (with
        their gradients, twice as much), weights, gradients and AdamW moments (four times the
        weights) within the share of the device's memory a pass may plan for. Of its whole memory,
        not of what is free now: the stacks, and so the rounding of their batched kernels, must not
        change from one run to the next with what else the machine holds."""
        activations = 2 * batching.example_bytes(architecture, self.data.x_train[:1], self.device) * self.recipe.batch_size
        weights = 4 * sum(p.numel() * p.element_size() for p in architecture.parameters())
        budget = batching.total_memory_bytes(self.device) * batching.MEMORY_SHARE.get(self.device.type, 0.25)
        return max(2, min(MAX_STACKED_MEMBERS, int(budget // max(1, activations + weights))))

    def _stacking_on(self, spec: ModelSpec) -> bool:
        """Stacking is not switched off for `spec`: a choice followed from elsewhere (`follow_choice`)
        rules over this process's SWIGLU_AUDIT_STACK, as it does in `stacking_choice`."""
        followed = self._followed.get(spec.name)
        return followed.stack if followed is not None else stacking_enabled()

    def stacks(self, name: str) -> bool:
        """Whether `name`'s trainings stack (`stacking_choice`); False where the choice cannot be
        made (the model cannot be built: its training meets that error and its checks report it)."""
        try:
            return self.stacking_choice(self.spec(name)).stack
        except Exception:  # noqa: BLE001
            return False

    def stacking_choice(self, spec: ModelSpec, followed: bool = True) -> StackChoice:
        """Whether the trainings of `spec` stack, and why (for the plan): off with
        SWIGLU_AUDIT_STACK=0; wherever the model can (a short stacked trial) with
        SWIGLU_AUDIT_STACK=1; by default unless a short stacked training of the audit's seeds is
        timed clearly slower than their lone ones (training/stack_choice.py). A timed choice is
        kept in the cache, keyed by what it depends on (the model, the data's shape, the device, the
        threads on a CPU, torch and the host) and not by the day, unlike the plan's probe: stacked
        and lone trainings round differently, so the same machine and cache must choose the same
        way every run. A choice made elsewhere and followed here (`follow_choice`) comes first,
        unless `followed` is False (the plan's probe, which times this process's own)."""
        if followed and spec.name in self._followed:  # chosen elsewhere for this process
            return self._followed[spec.name]
        if not stacking_enabled():
            return StackChoice(False, f"trains one by one: stacking is off ({STACK_ENV}=0)")
        if spec.weights:
            return StackChoice(False, "pretrained: not trained")
        # two at least: a single seed's trainings on several sets (the poisoning suite's) stack too
        members = max(2, len(self.config.seeds))
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0  # elsewhere the device's speed
        memo = ("stacking", spec.name, threads, stacking_forced())
        if memo not in self._choices:
            self._choices[memo] = self._timed_choice(spec, members, threads, timed=not stacking_forced())
        return self._choices[memo]

    def follow_choice(self, name: str, stack: bool) -> None:
        """Stack `name`'s trainings (or not) as chosen elsewhere, whatever this process would
        choose itself: a job graph's worker (a Ray task) follows the controller, which may run at
        other threads or with another SWIGLU_AUDIT_STACK, and the plan follows its probe's choice
        (timed at an xdist worker's threads). The jobs' parts follow the choice too (the poisoning
        job's trainings), so a worker reads the graph as the controller built it."""
        self._followed[name] = StackChoice(stack, ("seeds stacked" if stack else "trains one by one")
                                           + ": as chosen for this audit (by its plan's probe or its controller)")

    def _timed_choice(self, spec: ModelSpec, members: int, threads: int, timed: bool) -> StackChoice:
        batch = self.recipe.batch_size
        architecture, _ = self._architecture(spec)

        def choose_now() -> StackChoice:
            with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
                torch.manual_seed(0)
                model = self.instantiate(spec).to(self.device)
                self._check_contract(model, spec)  # sizes lazily made parameters
                rows = LONG_STEPS * batch
                return time_stacking(model, self.data.x_train[:rows], self.data.y_train[:rows], members, batch,
                                     self.device, timed=timed)

        if not timed:
            return choose_now()
        stopgap: list[StackChoice] = []

        def measure() -> tuple[dict, dict]:
            choice = choose_now()
            if not choice.lasting:  # not worth keeping (the timing failed, too few rows, lost in noise)
                stopgap.append(choice)
                raise _NotKept
            return ({"step_seconds": torch.tensor([choice.lone_step, choice.stacked_step], dtype=torch.float64)},
                    {"stack": choice.stack, "why": choice.why})

        # the rule's constants too: a changed margin or timing chooses afresh
        rule = {"slower_above": stack_choice.SLOWER_ABOVE, "steps": [stack_choice.SHORT_STEPS, LONG_STEPS],
                "repeats": stack_choice.REPEATS}
        key = cache_key({"kind": "stack-choice", "format": 3, "rule": rule, "spec": spec.to_dict(), "members": members,
                         "params": [(k, list(v.shape)) for k, v in architecture.state_dict().items()],
                         "input": list(self.data.input_shape), "batch": batch, "device": str(self.device),
                         "threads": threads, "cpus": os.cpu_count(), "torch": torch.__version__,
                         "host": platform.node()})
        try:
            tensors, record, _ = self.cache.get_or_create(key, measure, kind="probe")
        except _NotKept:
            return stopgap[0]
        except (CacheError, OSError):  # a cache that cannot be written: time it in this process
            return choose_now()
        lone_step, stacked_step = (float(v) for v in tensors["step_seconds"])
        return StackChoice(bool(record["stack"]), str(record["why"]), lone_step, stacked_step,
                           members=members if lone_step > 0 else 0)
