"""Model specs -> trained models, through the checkpoint cache.

Models are trained lazily, the first time a check asks for them, so that pytest-xdist workers
running different models train different models at once; the cache lock makes sure a model two
workers ask for at the same moment is trained once.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import platform
from collections.abc import Callable

import torch
from safetensors.torch import load_file
from torch import nn

from .. import __version__
from ..config import AuditConfig
from ..errors import CacheError, ModelContractError, TrainingDivergedError
from ..util.imports import load_callable
from . import batching
from .cache import CheckpointCache, cache_key, tensors_digest
from .data import AuditData
from .nn import ModelConfig, build_model, count_parameters
from .planned import Trainings, Work
from .progress import Progress
from .specs import ModelSpec, model_specs
from .stack_choice import LONG_STEPS, StackChoice, time_stacking
from .stacked import stackable, train_stacked
from .train import OUTLIER_PROBE, TRAINER_REVISION, Recipe, predict_logits, train_model


class TrainedModel:
    """One trained model. A model found in the cache is described (key, training record) without
    its weights, which are read, checked and given the contract check the first time `module` is
    used: a warm audit whose measurements are all cached never reads them."""

    def __init__(self, name: str, seed: int | None, module: nn.Module | None, record: dict, cached: bool,
                 n_parameters: int, key: str, load: Callable[[], TrainedModel] | None = None):
        self.name = name
        self.seed = seed  # None for user models loaded from pretrained weights
        self.record = record  # training record (history, seconds), {} for pretrained weights
        self.cached = cached
        self.n_parameters = n_parameters
        self.key = key  # identity of these weights: the checkpoint's cache key, or a hash of the weights file
        self._module, self._load = module, load
        if module is None and load is None:
            raise ValueError("a TrainedModel needs its module or a way to load it")

    @property
    def module(self) -> nn.Module:
        """The model on the audit device, in eval mode (read from the cache on first use)."""
        if self._module is None:
            assert self._load is not None
            read = self._load()  # a damaged entry is retrained there: its record replaces this one
            self._module, self._load, self.record, self.cached = read.module, None, read.record, read.cached
        return self._module

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def __repr__(self) -> str:
        return f"TrainedModel({self.name!r}, seed={self.seed}, key={self.key[:12]}, loaded={self.loaded})"


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """What the report says of one trained model: its seed, whether it was read from the cache,
    its training record and size (not its weights)."""
    seed: int | None
    cached: bool
    record: dict
    n_parameters: int

    @classmethod
    def of(cls, model: TrainedModel) -> ModelRun:
        return cls(model.seed, model.cached, model.record, model.n_parameters)


@dataclasses.dataclass(frozen=True)
class TrainingRequest:
    """Trainings of one model on one training set, for `Zoo.train_together`: as `Zoo.models` takes them."""
    tag: str
    inputs: object  # a tensor, or a poisoned set whose rows are patched on the fly
    labels: torch.Tensor
    seeds: tuple[int, ...]
    fine_tune_epochs: int | None = None
    patience: int = 0


@dataclasses.dataclass(frozen=True)
class _Member:
    """One training of a stacked model: a seed on a training set, from `start()` when fine-tuned."""
    tag: str
    seed: int
    inputs: object
    labels: torch.Tensor
    start: Callable[[], dict] | None = None


# A stack's members each hold their weights, AdamW moments and batches: a bound beside the memory's
MAX_STACKED_MEMBERS = 32


class _NotKept(Exception):
    """A stacking choice not worth keeping in the cache for the day (`Zoo._timed_choice`)."""

# "0" trains every seed alone (for comparing stacked and lone runs); "1" stacks wherever the model
# can stack, untimed; unset (the default): the seeds stack unless timing shows them clearly slower
# stacked (training/stack_choice.py)
STACK_ENV = "SWIGLU_AUDIT_STACK"


def stacking_enabled() -> bool:
    return os.environ.get(STACK_ENV, "") != "0"


def stacking_forced() -> bool:
    return os.environ.get(STACK_ENV, "") == "1"


class Zoo:
    def __init__(self, config: AuditConfig, data: AuditData, device: torch.device,
                 cache: CheckpointCache, progress: Progress | None = None):
        self.config = config
        self.data = data
        self.device = device
        self.cache = cache
        self.progress = progress or Progress(enabled=False)
        self.recipe = Recipe(**config.training.to_dict())
        self.specs = {s.name: s for s in model_specs(config)}
        self._trained: dict[tuple, dict[int | None, TrainedModel]] = {}
        self._forgotten: dict[tuple, dict[int | None, ModelRun]] = {}  # what `forget` dropped, for the report
        self._choices: dict[tuple, StackChoice] = {}  # whether each model's seeds stack (stacking_choice)
        # A model that failed once fails the same way for every check that asks for it: keep the
        # error instead of training (and failing) again for each of its checks.
        self._failed: dict[tuple, ModelContractError] = {}
        self._architectures: dict[str, tuple[nn.Module, int]] = {}

    def spec(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise KeyError(f"no model named {name!r} in this audit; known: {sorted(self.specs)}")
        return self.specs[name]

    def trained_seeds(self, name: str) -> tuple[int | None, ...]:
        """The seeds a model is trained at: the audit's, or one "seed" (None) for pretrained weights."""
        return (None,) if self.spec(name).weights else tuple(self.config.seeds)

    def planned_work(self, name: str) -> Work:
        """The training job's declared work: the clean trainings of every seed (none for a model
        with pretrained weights); each validation pass also reads the FFN-outlier probe."""
        if self.spec(name).weights:
            return Work()
        clean = Trainings(["clean"], self.config.training.epochs, tuple(self.config.seeds),
                          probe_examples=min(OUTLIER_PROBE, len(self.data.y_val)))
        return Work(trainings={"clean": clean})

    def models(self, name: str, labels: torch.Tensor | None = None, tag: str = "clean",
               inputs: torch.Tensor | None = None, fine_tune_epochs: int | None = None,
               patience: int = 0, seeds: tuple[int, ...] | None = None) -> list[TrainedModel]:
        """The trained models of one spec, one per seed. `inputs` and `labels` replace the
        training images and labels (for poisoning); `tag` names that change and is part of the
        cache key. With `fine_tune_epochs`, each seed's clean model is trained on for that many
        epochs instead of a model trained from scratch (the cheaper poisoning of users' models);
        with `patience`, training stops early when validation accuracy stops improving. `seeds`:
        train for these of the audit's seeds only (the cheaper poisoning); every seed by default.
        A model with pretrained weights cannot be retrained on changed data."""
        key = (name, tag)
        spec = self.spec(name)
        seeds = (None,) if spec.weights else (tuple(self.config.seeds) if seeds is None else seeds)
        trained = self._trained.setdefault(key, {})  # seed -> model: a later call may ask for more seeds

        def train_missing() -> None:
            if spec.weights and tag != "clean":
                raise ModelContractError(f"model '{spec.name}' has pretrained weights; it cannot "
                                         f"be retrained on changed training data ({tag})")
            missing = [seed for seed in seeds if seed not in trained]
            if spec.weights and missing:
                trained[None] = self._load_pretrained(spec)
            elif missing:
                x = self.data.x_train if inputs is None else inputs
                y = self.data.y_train if labels is None else labels
                clean = {m.seed: m for m in self.models(name)} if fine_tune_epochs else {}
                # each fine-tuning's start, read only where that seed trains: a warm audit describes
                # the fine-tuned models from the cache without reading their clean models' weights
                starts = {seed: (lambda m=clean[seed]: m.module.state_dict()) for seed in missing} if clean else {}
                stacked = self._train_stacked(spec, [_Member(tag, seed, x, y, starts.get(seed)) for seed in missing],
                                              fine_tune_epochs, patience)
                for seed in missing:
                    trained[seed] = self._train_one(spec, seed, x, y, tag, starts.get(seed), fine_tune_epochs,
                                                    patience, stacked.get((tag, seed)))

        self._remembering_failures(key, train_missing)
        return [trained[seed] for seed in seeds]

    def _remembering_failures(self, key: tuple[str, str], action: Callable):
        """`action()`, unless (model, tag) failed before: a model that failed once fails the same
        way for every check that asks for it, so its error is kept (without its traceback, which
        holds the training's frames: model, data) instead of training and failing again."""
        if key in self._failed:  # a fresh copy each time: a raised error carries the frames it passed
            failed = self._failed[key]
            raise type(failed)(*failed.args)
        try:
            return action()
        except ModelContractError as exc:
            self._failed[key] = type(exc)(*exc.args)
            raise
        except FloatingPointError as exc:  # diverged: remembered like a contract error, not retrained per check
            self._failed[key] = TrainingDivergedError(f"model '{key[0]}' could not be trained ({key[1]}): {exc}")
            raise TrainingDivergedError(*self._failed[key].args) from None

    def forget(self) -> None:
        """Drop the trained models held in memory; the next request loads them from the cache.
        What the report says of them (trained in this run or read from the cache) is kept."""
        for key, by_seed in self._trained.items():
            kept = self._forgotten.setdefault(key, {})
            for seed, model in by_seed.items():
                kept.setdefault(seed, ModelRun.of(model))
        self._trained.clear()

    def trained_runs(self) -> list[tuple[tuple[str, str], list[ModelRun]]]:
        """((model name, tag), its trained models) for everything this process has trained or
        loaded, forgotten ones included: as first seen (a model trained here and read again from
        the cache after `forget` was trained here)."""
        out = {key: dict(by_seed) for key, by_seed in self._forgotten.items()}
        for key, by_seed in self._trained.items():
            seen = out.setdefault(key, {})
            for seed, model in by_seed.items():
                seen.setdefault(seed, ModelRun.of(model))
        return [(key, list(by_seed.values())) for key, by_seed in out.items() if by_seed]

    def instantiate(self, spec: ModelSpec) -> nn.Module:
        """A fresh, untrained model of this spec (random init from the current torch seed)."""
        if spec.factory:
            model = call_factory(spec, self.data)
        else:
            model = build_model(ModelConfig(family=spec.family, ffn=spec.ffn, n_classes=self.data.n_classes,
                                            input_shape=self.data.input_shape, **spec.arch))
        return model

    def training_key(self, spec: ModelSpec, seed: int, tag: str, model: nn.Module, recipe: Recipe | None = None) -> str:
        """The checkpoint cache key of one training (also what the plan checks for)."""
        return cache_key({
            "spec": spec.to_dict(), "data": self.data.fingerprint, "seed": seed,
            "recipe": (recipe or self.recipe).to_dict(), "trainer": TRAINER_REVISION, "harness": __version__,
            "tag": tag,
            # user models: their code is outside our control; the parameter names and shapes
            # at least catch an edited architecture
            "params": [(k, list(v.shape)) for k, v in model.state_dict().items()],
            "precision": "bf16" if self.device.type == "cuda" else "fp32",
        })

    def train_together(self, name: str, requests: list[TrainingRequest]) -> None:
        """Train what these requests lack (trainings of one model on several training sets: the
        poisoning suite's sets) as few stacked models as it can: the members that share a schedule
        (epochs, patience, fine-tuning) and a set length stack across sets, each member on its own
        set, where the model's seeds stack (`stacking_choice`). Each is stored under its own key
        and kept, so `models(name, tag=...)` then returns it as if it had trained it; whatever
        does not stack (or fails to) is left to `models`, which trains it alone."""
        spec = self.spec(name)
        if spec.weights or not stacking_enabled():
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
            members = [_Member(r.tag, seed, r.inputs, r.labels,
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

    def _train_stacked(self, spec: ModelSpec, members: list[_Member], epochs: int | None,
                       patience: int) -> dict[tuple[str, int], tuple[dict, dict]]:
        """The members (seeds of `spec`, each on its training set) not in the cache, trained as
        stacked models (training/stacked.py), as many to a stack as memory allows:
        {(tag, seed): (state, record)} for `_train_one` to store under each one's own key, so a
        stacked and a lone run share the cache. {} where fewer than two need training, stacking is
        off (SWIGLU_AUDIT_STACK=0), or the model cannot stack or was timed clearly slower stacked
        (each then trains alone)."""
        if len(members) < 2 or not stacking_enabled():
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

    def _train_one_stack(self, spec: ModelSpec, chunk: list[_Member], recipe: Recipe) -> dict[tuple[str, int], tuple[dict, dict]]:
        models = []
        for member in chunk:
            torch.manual_seed(member.seed)  # each member initialised as its lone training would be
            model = self.instantiate(spec).to(self.device)
            check_model_contract(model, spec.name, self.data, self.device)
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

    def stacking_choice(self, spec: ModelSpec) -> StackChoice:
        """Whether the trainings of `spec` stack, and why (for the plan): off with
        SWIGLU_AUDIT_STACK=0; wherever the model can (a short stacked trial) with
        SWIGLU_AUDIT_STACK=1; by default unless a short stacked training of the audit's seeds is
        timed clearly slower than their lone ones (training/stack_choice.py). A timed choice is
        kept in the cache, keyed by what it depends on (the model, the data's shape, the device, the
        threads on a CPU, torch and the host) and not by the day, unlike the plan's probe: stacked
        and lone trainings round differently, so the same machine and cache must choose the same
        way every run."""
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

    def _timed_choice(self, spec: ModelSpec, members: int, threads: int, timed: bool) -> StackChoice:
        batch = self.recipe.batch_size
        architecture, _ = self._architecture(spec)

        def choose_now() -> StackChoice:
            with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
                torch.manual_seed(0)
                model = self.instantiate(spec).to(self.device)
                check_model_contract(model, spec.name, self.data, self.device)  # sizes lazily made parameters
                rows = LONG_STEPS * batch
                return time_stacking(model, self.data.x_train[:rows], self.data.y_train[:rows], members, batch,
                                     self.device, timed=timed)

        if not timed:
            return choose_now()
        stopgap: list[StackChoice] = []

        def measure() -> tuple[dict, dict]:
            choice = choose_now()
            if not choice.lasting:  # not worth keeping for the day (the timing failed, too few rows)
                stopgap.append(choice)
                raise _NotKept
            return ({"step_seconds": torch.tensor([choice.lone_step, choice.stacked_step], dtype=torch.float64)},
                    {"stack": choice.stack, "why": choice.why})

        key = cache_key({"kind": "stack-choice", "format": 2, "spec": spec.to_dict(), "members": members,
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
        return StackChoice(bool(record["stack"]), str(record["why"]), lone_step, stacked_step)

    def _train_one(self, spec: ModelSpec, seed: int, inputs: torch.Tensor, labels: torch.Tensor,
                   tag: str, start: Callable[[], dict] | None = None, epochs: int | None = None,
                   patience: int = 0, stacked: tuple[dict, dict] | None = None, eager: bool = False) -> TrainedModel:
        """One seed's training; from `start()` (a clean model's state) for `epochs` when fine-tuning.
        The clean model's key is in the tag (via the seed and recipe): the fine-tuned key follows it.
        `stacked`: this seed's (state, record) from a stacked training, stored under its own key.
        A model already in the local cache is returned unread unless `eager`: its weights are read
        (checked, and retrained if damaged) when first used."""
        recipe = dataclasses.replace(self.recipe, epochs=epochs or self.recipe.epochs, patience=patience)
        # A warm audit: described from the cache, its weights read on first use. Not where the cache
        # is signed: an entry's record is trusted only once its weights' signature is checked.
        if stacked is None and not eager and not self.cache.secret:
            architecture, n_parameters = self._architecture(spec)
            key = self.training_key(spec, seed, tag, architecture, recipe)
            record = self.cache.record(key)
            if record is not None and record.get("contract") is True:  # kept it when stored (`train` below)
                self.cache.stats.hits += 1
                uncounted = [True]

                def load() -> TrainedModel:
                    if uncounted:  # counted above; reading it counts it again (or a miss, if damaged)
                        uncounted.clear()
                        self.cache.stats.hits -= 1
                    # read in the middle of a measurement: the seeding that reading does (as a
                    # training would) must not change the random state the measurement draws from
                    with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
                        return self._remembering_failures((spec.name, tag), lambda: self._train_one(
                            spec, seed, inputs, labels, tag, start, epochs, patience, eager=True))
                return TrainedModel(spec.name, seed, None, record, True, n_parameters, key, load=load)
        torch.manual_seed(seed)
        model = self.instantiate(spec).to(self.device)
        check_model_contract(model, spec.name, self.data, self.device)
        key = self.training_key(spec, seed, tag, model, recipe)  # (names and shapes: no start needed)

        def train() -> tuple[dict, dict]:
            if stacked is not None:  # trained with its siblings: this model takes its weights
                model.load_state_dict(stacked[0])
                state, record = stacked
            else:
                if start is not None:  # read here, not for a cached fine-tuning: its own weights replace it
                    model.load_state_dict(start())
                self.progress.update(f"training {spec.name} seed {seed} ({tag.split('-seed')[0]})")  # tag without its cache suffix
                # the FFN's outliers over training are the deployment suite's, read from clean trainings only
                record = train_model(model, inputs, labels, recipe, seed, self.device,
                                     self.data.x_val, self.data.y_val, outliers=tag == "clean")
                record["model"], record["tag"] = spec.name, tag  # what the checkpoint is, for whoever reads the cache
                state = model.state_dict()
            # whether it kept the contract when stored: a cached entry that did can be described
            # from its record (a warm audit) without reading its weights to check them again; one
            # that did not is stored too, and fails the same check cheaply on every later run
            try:
                check_model_contract(model, spec.name, self.data, self.device, trained=True)
                record["contract"] = True
            except ModelContractError:
                record["contract"] = False
            return state, record

        state, record, cached = self.cache.get_or_create(key, train)
        if cached:
            model.load_state_dict(state)
        model.to(self.device).eval()
        if cached or record.get("contract") is not True:  # a fresh training passed it in `train` already
            check_model_contract(model, spec.name, self.data, self.device, trained=True)
        return TrainedModel(spec.name, seed, model, record, cached, count_parameters(model), key)

    def _architecture(self, spec: ModelSpec) -> tuple[nn.Module, int]:
        """An untrained instance of `spec` (what its cache key reads: parameter names and shapes)
        and its parameter count; built once per spec, leaving the random state as it was."""
        if spec.name not in self._architectures:
            with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
                model = self.instantiate(spec).to(self.device)
                # a first forward pass, as before training: it sizes parameters created on first use
                # (nn.LazyLinear), whose shapes the key reads, and names a broken factory
                check_model_contract(model, spec.name, self.data, self.device)
            self._architectures[spec.name] = (model, count_parameters(model))
        return self._architectures[spec.name]

    def _load_pretrained(self, spec: ModelSpec) -> TrainedModel:
        path = self.config.project_path(spec.weights or "")
        model = self.instantiate(spec)
        try:
            state = load_file(str(path))  # safetensors: no unpickling of untrusted data
            model.load_state_dict(state)
        except FileNotFoundError as exc:
            raise ModelContractError(f"model '{spec.name}': weights file {path} does not exist; fix "
                                     "'weights' in [[tool.swiglu_audit.models]]") from exc
        except Exception as exc:
            raise ModelContractError(f"model '{spec.name}': cannot load weights {path} "
                                     f"({type(exc).__name__}: {exc}); give a safetensors file "
                                     "saved from this model's state_dict") from exc
        model.to(self.device).eval()
        check_model_contract(model, spec.name, self.data, self.device, trained=True)
        return TrainedModel(spec.name, None, model, {}, True, count_parameters(model),
                            tensors_digest(model.state_dict()))


def call_factory(spec: ModelSpec, data: AuditData) -> nn.Module:
    setting = f"[[tool.swiglu_audit.models]] '{spec.name}' factory"
    factory = load_callable(spec.factory, setting, ModelContractError)
    # Pass only the keyword arguments the factory accepts: a factory for a fixed dataset may
    # take none at all.
    offered = {"input_shape": data.input_shape, "n_classes": data.n_classes}
    try:
        params = inspect.signature(factory).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = offered if takes_kwargs else {k: v for k, v in offered.items() if k in params}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise ModelContractError(f"model '{spec.name}': factory '{spec.factory}' raised "
                                 f"{type(exc).__name__}: {exc}; fix the factory") from exc
    if not isinstance(model, nn.Module):
        raise ModelContractError(f"model '{spec.name}': factory '{spec.factory}' returned "
                                 f"{type(model).__name__}, not a torch.nn.Module")
    return model


def check_model_contract(model: nn.Module, name: str, data: AuditData, device: torch.device,
                         trained: bool = False) -> None:
    """Inputs (N, C, H, W) in [0, 1] -> finite logits (N, n_classes). Raises ModelContractError."""
    probe = data.x_val[:8]
    try:
        out = predict_logits(model, probe, device)
    except Exception as exc:
        raise ModelContractError(f"model '{name}' fails on a batch of shape {tuple(probe.shape)} "
                                 f"({type(exc).__name__}: {exc}); it must accept (N, "
                                 f"{', '.join(map(str, data.input_shape))}) inputs in [0, 1]") from exc
    expected = (len(probe), data.n_classes)
    if tuple(out.shape) != expected:
        raise ModelContractError(f"model '{name}' returns shape {tuple(out.shape)} for a batch of "
                                 f"{len(probe)}; expected {expected} (one logit per class)")
    if not torch.isfinite(out).all():
        when = "after training" if trained else "at initialisation"
        raise ModelContractError(f"model '{name}' returns NaN or infinite logits {when}; check "
                                 "its forward pass (and lower the learning rate if it diverged)")
