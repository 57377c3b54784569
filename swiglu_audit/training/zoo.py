"""Model specs -> trained models, through the checkpoint cache.

Models are trained lazily, the first time a check asks for them, so that pytest-xdist workers
running different models train different models at once; the cache lock makes sure a model two
workers ask for at the same moment is trained once.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import torch
from safetensors.torch import load_file
from torch import nn

from .. import __version__
from ..config import AuditConfig
from ..errors import ModelContractError, SwigluAuditError, TrainingDivergedError, TrainingFailedError
from ..util.imports import load_callable, model_source_digest
from .cache import CheckpointCache, cache_key, tensors_digest
from .data import PROBE_ROWS, AuditData
from .nn import ModelConfig, build_model, count_parameters, eval_mode
from .planned import Trainings, Work
from .progress import Progress
from .specs import ModelSpec, model_specs
from .stack_choice import StackChoice
from .train import OUTLIER_PROBE, TRAINER_REVISION, Recipe, train_model
from .zoo_stacking import StackedTrainings, StackMember


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


class Zoo(StackedTrainings):
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
        self._followed: dict[str, StackChoice] = {}  # name -> a choice made elsewhere (follow_choice)
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
                stacked = self._train_stacked(spec, [StackMember(tag, seed, x, y, starts.get(seed)) for seed in missing],
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
        except (SwigluAuditError, OSError):  # the harness's own errors and the machine's: not the model's
            raise
        except Exception as exc:
            # a forward or backward pass that fails only in training (a layer that refuses train
            # mode, a batch the probe did not try): every check would train it and fail again
            self._failed[key] = TrainingFailedError(f"model '{key[0]}' could not be loaded or trained ({key[1]}): "
                                                    f"{type(exc).__name__}: {exc}")
            raise TrainingFailedError(*self._failed[key].args) from exc

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
            # catch an edited architecture, the source of the modules their classes come from an
            # edited forward pass
            "params": [(k, list(v.shape)) for k, v in model.state_dict().items()],
            **({"source": model_source_digest(model, spec.factory)} if spec.factory else {}),
            "precision": "bf16" if self.device.type == "cuda" else "fp32",
        })

    def _check_contract(self, model: nn.Module, spec: ModelSpec) -> None:
        check_model_contract(model, spec.name, self.data, self.device)

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
                         trained: bool = False, loaded_from: str | None = None) -> None:
    """Inputs (N, C, H, W) in [0, 1] -> finite floating-point logits (N, n_classes); and, for a
    model the audit is to train (`trained` False), trainable parameters that a backward pass from
    those logits reaches: what training needs, checked before it starts rather than failing in
    every check that trains the model. Raises ModelContractError."""
    probe = data.x_val[:PROBE_ROWS]
    out = _probe_forward(model, name, data, probe, device, with_grad=not trained)
    if not isinstance(out, torch.Tensor):
        raise ModelContractError(f"model '{name}' returns {type(out).__name__}, not a tensor of logits; "
                                 f"its forward must return one tensor of shape (N, {data.n_classes})")
    if not out.is_floating_point():
        raise ModelContractError(f"model '{name}' returns logits of dtype {out.dtype}; return floating-point "
                                 "logits (float32), not rounded scores or class indices: the audit trains "
                                 "and attacks the model through their gradients")
    expected = (len(probe), data.n_classes)
    if tuple(out.shape) != expected:
        raise ModelContractError(f"model '{name}' returns shape {tuple(out.shape)} for a batch of "
                                 f"{len(probe)}; expected {expected} (one logit per class)")
    if not torch.isfinite(out.detach()).all():
        if loaded_from:  # nothing was trained: the weights given are where to look first
            raise ModelContractError(f"model '{name}' returns NaN or infinite logits with the weights loaded from "
                                     f"{loaded_from}; check those weights for NaN or infinite values, then its "
                                     "forward pass")
        when = "after training" if trained else "at initialisation"
        raise ModelContractError(f"model '{name}' returns NaN or infinite logits {when}; check "
                                 "its forward pass (and lower the learning rate if it diverged)")
    _check_leaves_its_input(model, name, probe, device)
    if not trained:
        _check_trainable(model, name, out)


def _check_leaves_its_input(model: nn.Module, name: str, probe: torch.Tensor, device: torch.device) -> None:
    """Every model of an audit reads the same input tensors (the OOD sets, the attacked inputs, the
    evaluation batches), and the results are cached: a forward pass that writes to its input
    (`x.mul_(0.5)` to normalise) would change what the models after it see, and keep the damage
    in the cache. Checked on a copy, without gradients, as evaluation calls it."""
    x = probe.to(device, copy=True)
    with torch.no_grad(), eval_mode(model):
        model(x)
    if not torch.equal(x, probe.to(device)):
        raise ModelContractError(f"model '{name}' changes its input tensor in place; every model of the audit "
                                 "reads the same inputs, so the models measured after it would see what it "
                                 "wrote. Compute out of place in its forward (x = x * 0.5, not x.mul_(0.5); "
                                 "or x = x.clone() first)")


def _probe_forward(model: nn.Module, name: str, data: AuditData, probe: torch.Tensor, device: torch.device,
                   with_grad: bool):
    """The model's raw output on the probe batch (in eval mode, its mode restored after)."""
    try:
        with torch.set_grad_enabled(with_grad), eval_mode(model):
            return model(probe.to(device, copy=True))  # a copy: the probe is a view of the audit's data
    except Exception as exc:
        # the cause may be the input's shape or the device (a forward that needs CUDA): name both
        raise ModelContractError(f"model '{name}' raised {type(exc).__name__} on a probe batch of shape "
                                 f"{tuple(probe.shape)} on device {device}: {exc}; it must accept (N, "
                                 f"{', '.join(map(str, data.input_shape))}) float32 inputs in [0, 1] on "
                                 "the audit's device") from exc


def _check_trainable(model: nn.Module, name: str, logits: torch.Tensor) -> None:
    """A model the audit trains needs a parameter that the gradient of its logits reaches; an
    optimizer over nothing, or logits cut from the graph, fail only once training starts."""
    why = "the audit trains it (it has no `weights` file)"
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelContractError(f"model '{name}' has no trainable parameters, and {why}; give it parameters "
                                 "(nn.Module attributes with requires_grad), or give a `weights` file")
    if not logits.requires_grad:
        raise ModelContractError(f"model '{name}' returns logits that carry no gradient (detached, made "
                                 f"under torch.no_grad(), or through numpy), and {why}; compute them from "
                                 "its parameters with torch operations")
    try:
        with torch.enable_grad():  # a model is often first loaded (and so trained) under a caller's no_grad
            grads = torch.autograd.grad(logits.float().sum(), params, allow_unused=True)
    except RuntimeError:
        # some layers refuse a backward pass in eval mode (cuDNN's RNNs) yet train in train mode:
        # no proof either way, so training is left to show it
        return
    if all(g is None for g in grads):
        raise ModelContractError(f"model '{name}': a backward pass from its logits reaches none of its "
                                 f"parameters, and {why}; compute the logits from its parameters")
