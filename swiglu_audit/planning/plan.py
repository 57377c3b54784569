"""The audit's cost before paying it: what will be trained and computed per model and job, how
much of it the checkpoint cache already holds, and an estimate of the time from a short timed
probe of each model on the audit's device (a few training steps, one input-gradient pass, and the
units of work a suite times itself).

The plan restates no suite's work. The training job declares the clean trainings
(`Zoo.planned_work`); every suite declares its own work on a model in its measurement module (the
`work` its catalogue entry names: trainings by purpose, attack passes, other passes over data, and
its own units), its own timed units (`units`) and the settings that make it cheaper (`cuts`).
The plan prices what is declared with the probe's unit costs, by the job that does it (the suite's
job, or "checks" for work the pytest items do themselves), and divides by the number of workers.
On a CPU the probe runs at the thread count each worker will have, since the workers split the
cores. It leaves out statistics, scikit-learn's own work and start-up, and assumes the workers
share the work evenly.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..checks.suite_catalog import job_of
from ..config import OPT_SEEDS, apply_changes
from ..errors import CacheError, ConfigError
from ..training.device import autocast
from ..training.planned import Trainings, Unit, Work, minus, part_job, total

if TYPE_CHECKING:
    from ..config import AuditConfig
    from ..session import AuditSession

PROBE_ENV = "SWIGLU_AUDIT_PROBE_SECONDS"
PROBE_WARMUP, PROBE_STEPS = 3, 7  # untimed calls (allocation, kernel choice), then timed ones
TRAINING_JOB = "training"


@dataclass(frozen=True)
class UnitCosts:
    """A model's unit costs on the audit's device: seconds per training step, per input-gradient
    pass over the attack set, per stacked step of all the audit's seeds (0: it does not stack),
    and per unit each suite times itself (by the unit's name)."""
    step: float
    gradient: float
    stacked: float = 0.0
    units: dict[str, float] = field(default_factory=dict)
    stacking: str = ""  # whether the seeds train stacked, and why (training/stack_choice.py)
    stacks: bool = False  # ... and which way it went


@dataclass
class ModelPlan:
    name: str
    trainings: dict[str, int] = field(default_factory=dict)  # what for -> count
    cached_trainings: int = 0
    epochs_per_training: dict[str, int] = field(default_factory=dict)
    early_stopping: list[str] = field(default_factory=list)  # purposes whose trainings may stop early
    gradient_passes: int = 0  # input-gradient passes of the attacks, each over the attack set
    forward_passes: int = 0  # forward-only passes (query attacks), each over the attack set
    other_forward_examples: int = 0  # examples passed forward by the rest of the audit (validation included)
    other_gradient_examples: int = 0  # examples passed forward and backward by the rest of the audit
    units: dict[str, int] = field(default_factory=dict)  # a suite's own unit (the trigger scan's step) -> count
    costs: UnitCosts = field(default_factory=lambda: UnitCosts(0.0, 0.0))
    stacked: list[str] = field(default_factory=list)  # purposes whose seeds train as one stacked model
    parts: dict[str, float] = field(default_factory=dict)  # estimated seconds by part of the work
    purpose_seconds: dict[str, float] = field(default_factory=dict)  # the trainings' part, by purpose
    job_seconds: dict[str, float] = field(default_factory=dict)  # the estimate by the job doing the work

    probe_error: str = ""  # why the probe could not time this model (its time is then left out)

    @property
    def step_seconds(self) -> float:
        return self.costs.step

    @property
    def gradient_seconds(self) -> float:
        return self.costs.gradient

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    def seconds_by_job(self) -> dict[str, float]:
        """The estimate split by the job of the audit's graph that does the work (TRAINING_JOB, a
        suite's job, or "checks": what the pytest items do themselves); the parts sum to `seconds`."""
        return dict(self.job_seconds)


@dataclass
class AuditPlan:
    models: list[ModelPlan]
    workers: int
    device: str

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self.models) / max(1, self.workers)

    def to_dict(self) -> dict:
        return {"estimated_seconds": round(self.seconds, 1), "workers": self.workers, "device": self.device,
                "models": [{"name": m.name, "trainings": m.trainings, "epochs_per_training": m.epochs_per_training,
                            "early_stopping": m.early_stopping,
                            "cached_trainings": m.cached_trainings,
                            "gradient_passes": m.gradient_passes, "forward_passes": m.forward_passes,
                            "other_forward_examples": m.other_forward_examples,
                            "other_gradient_examples": m.other_gradient_examples, "units": m.units,
                            "estimated_seconds_by_part": {k: round(v, 1) for k, v in m.parts.items()},
                            "training_seconds_by_purpose": {k: round(v, 2) for k, v in m.purpose_seconds.items()},
                            "seconds_by_job": {k: round(v, 2) for k, v in m.seconds_by_job().items()},
                            "probe_step_seconds": m.costs.step, "probe_gradient_seconds": m.costs.gradient,
                            "probe_unit_seconds": m.costs.units,
                            "probe_stacked_step_seconds": m.costs.stacked, "stacked": m.stacked,
                            "stacking": m.costs.stacking or None, "stacks": m.costs.stacks,
                            "estimated_seconds": round(m.seconds, 1), "probe_error": m.probe_error or None}
                           for m in self.models]}


def declared_work(audit: AuditSession, name: str) -> dict[str, Work]:
    """job -> the work declared for one model: the training job's clean trainings, and each
    suite's `work` (catalogue), under the suite's job or "checks"."""
    from ..measure import declared

    out = {TRAINING_JOB: audit.zoo.planned_work(name)}
    parts_of = declared("parts")
    for suite, planned in declared("work").items():
        job, work = job_of(suite), planned(audit, name)
        if job == suite and suite in parts_of:  # its parts are jobs of their own: the rest is the suite's
            parts = parts_of[suite](audit, name)
            for part in parts:
                out[part_job(suite, part.name)] = part.work
            work = minus(work, [part.work for part in parts])
        out[job] = total([out.get(job, Work()), work])
    return out


def declared_units(audit: AuditSession, name: str, model) -> list[Unit]:
    """Every suite's self-timed units (catalogue `units`) that `name`'s work runs, on `model` (an
    instance of it): a suite declares none for a model it does not measure (a ViT outside the
    poisoning suite's families runs no trigger scan; timing one took 5.7 s of its 6.4 s probe)."""
    from ..measure import declared

    return [unit for probe_units in declared("units").values() for unit in probe_units(audit, name, model)]


def _unit_settings(audit: AuditSession) -> dict:
    """The settings of the suites that declare self-timed units, for the probe's cache key: which
    models they measure (and so which units a probe times) follows from them."""
    from ..measure import declared

    return {suite: dataclasses.asdict(section) if dataclasses.is_dataclass(section) else repr(section)
            for suite in sorted(declared("units")) for section in [getattr(audit.config, suite, None)]}


def probe(audit: AuditSession, name: str, workers: int = 1) -> UnitCosts:
    """The unit costs of a fresh copy of the model on the audit's device, each the median of a
    few timed repetitions; or the unit costs given in SWIGLU_AUDIT_PROBE_SECONDS
    ("step,gradient[,unit]"; the third is every suite unit's, the trigger scan's step today): to
    plan a run on another machine from costs measured there, or to make the plan reproducible. On
    a CPU it runs at the thread count each of `workers` xdist workers will have (a unit at its own
    `cpu_threads`)."""
    spec, data, device = audit.zoo.spec(name), audit.data, audit.device
    torch.manual_seed(0)
    model = audit.zoo.instantiate(spec).to(device).train()  # a fresh model: the audit's are untouched
    units = declared_units(audit, name, model)
    given = os.environ.get(PROBE_ENV)
    if given:
        try:
            values = [float(v) for v in given.split(",")]
            if len(values) not in (2, 3) or min(values) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{PROBE_ENV}={given!r}: give two or three numbers of seconds, "
                              "\"<training step>,<gradient pass>[,<scan step>]\", e.g. \"0.004,0.002\"") from None
        return UnitCosts(values[0], values[1], 0.0,  # no stacked step given: trainings counted one by one
                         {u.name: values[2] if len(values) == 3 else values[1] * u.gradient_passes for u in units},
                         f"not timed (unit costs given in {PROBE_ENV}): trainings counted one by one")
    n = audit.config.adversarial.n_examples
    batch = audit.config.training.batch_size
    x, y = data.x_train[:batch].to(device), data.y_train[:batch].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    xa, ya = data.x_test[:n].to(device), data.y_test[:n].to(device)

    def train_step():
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def gradient_pass():
        xg = xa.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xg), ya), xg)

    threads = torch.get_num_threads()
    worker_threads = max(1, (os.cpu_count() or 1) // workers) if device.type == "cpu" and workers > 1 else threads
    try:
        torch.set_num_threads(worker_threads)  # as session._share_cores_with_other_workers will
        step_s, grad_s = _median_seconds(train_step, device), _median_seconds(gradient_pass, device)
        # the zoo's own choice (timed once, kept in the cache): the plan prices what the trainings will do
        choice = audit.zoo.stacking_choice(spec, followed=False)  # this machine's own, as timed here
        # today's lone step at the timed ratio (the choice is kept for good, the probe for the day);
        # stacked untimed (SWIGLU_AUDIT_STACK=1): priced as the lone steps it replaces
        timed = choice.lone_step > 0 and choice.members > 0
        ratio = choice.stacked_step / (choice.members * choice.lone_step) if timed else 1.0
        stacked_s = ratio * len(audit.config.seeds) * step_s if choice.stack else 0.0
        unit_s = {}
        for unit in units:
            torch.set_num_threads(unit.cpu_threads if device.type == "cpu" and unit.cpu_threads else worker_threads)
            unit_s[unit.name] = _median_seconds(unit.run, device) / unit.per_run
        return UnitCosts(step_s, grad_s, stacked_s, unit_s, choice.why, choice.stack)
    finally:
        torch.set_num_threads(threads)


def timed_today(audit: AuditSession, name: str, workers: int) -> UnitCosts:
    """`probe`, kept in the cache folder for the rest of the day (UTC) on this machine: a warm
    audit re-plans without timing every model again. The entry is keyed by what the unit costs
    depend on (the model and its parameters' shapes, the data's shape, the device, the threads per
    worker, torch, the host), so another machine, setting or model times afresh; the day bounds how stale a machine's
    speed, which drifts from day to day, can be; and by the settings of the suites that declare
    self-timed units, which decide the units a model runs. Unit costs given in SWIGLU_AUDIT_PROBE_SECONDS
    are used as given."""
    if os.environ.get(PROBE_ENV):
        return probe(audit, name, workers)
    key = probe_key(audit, name, workers)

    def measure():
        costs = probe(audit, name, workers)
        names = sorted(costs.units)
        return ({"unit_costs": np.array([costs.step, costs.gradient, costs.stacked], dtype=np.float64),
                 "suite_units": np.array([costs.units[u] for u in names], dtype=np.float64)},
                {"units": names, "stacking": costs.stacking, "stacks": costs.stacks})

    # through the cache's signed result entries: with SWIGLU_AUDIT_CACHE_KEY a planted probe,
    # which would decide max_minutes and the cut, is not trusted
    try:
        tensors, record, _ = audit.cache.get_or_create(key, _as_tensors(measure), kind="probe")
    except (CacheError, OSError):  # a cache that cannot be written still plans, by timing each time
        return probe(audit, name, workers)
    step_s, grad_s, stacked_s = (float(v) for v in tensors["unit_costs"])
    return UnitCosts(step_s, grad_s, stacked_s,
                     {u: float(v) for u, v in zip(record["units"], tensors["suite_units"].tolist(), strict=True)},
                     str(record.get("stacking", "")), bool(record.get("stacks", False)))


def probe_key(audit: AuditSession, name: str, workers: int) -> str:
    """The cache key of `name`'s unit costs timed today (`timed_today`)."""
    from ..measure import declared
    from ..training.cache import cache_key

    data, device = audit.data, audit.device
    spec = audit.zoo.spec(name)
    shapes = [(k, list(v.shape)) for k, v in audit.zoo.instantiate(spec).state_dict().items()]  # an edited model
    # format 3: the trigger scan's unit timed per class-step of a group of classes; 4: the stacked
    # step is the zoo's timed choice (training/stack_choice.py), with its reason; 5: at its ratio;
    # 6: which way it went ("stacks"), which the plan and the job graph now follow; 7: below
    return cache_key({"kind": "probe", "format": 7, "spec": spec.to_dict(), "params": shapes,
                     "input": list(data.input_shape), "classes": data.n_classes, "device": str(device),
                     "workers": workers, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "host": platform.node(),
                     "day": time.strftime("%Y-%m-%d", time.gmtime()),
                     "batch": audit.config.training.batch_size, "attack_set": audit.config.adversarial.n_examples,
                     "seeds": len(audit.config.seeds), "stacking": os.environ.get("SWIGLU_AUDIT_STACK", ""),
                     "unit_suites": sorted(declared("units")),  # a suite with new units times afresh
                     # format 7: only the units the model's work runs are timed; a change to those
                     # suites' settings (the model's family poisoned, say) times afresh
                     "unit_settings": _unit_settings(audit)})


def _as_tensors(measure):
    def create():
        arrays, record = measure()
        return {k: torch.from_numpy(v) for k, v in arrays.items()}, record
    return create


def _median_seconds(fn, device: torch.device) -> float:
    for _ in range(PROBE_WARMUP):
        fn()
    times = []
    for _ in range(PROBE_STEPS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def make_plan(audit: AuditSession, workers: int, probes: dict[str, UnitCosts] | None = None) -> AuditPlan:
    """The plan of this audit. `probes` reuses unit costs measured before (for alternatives)."""
    plans = []
    for name in audit.zoo.specs:
        probe_error = ""
        try:
            costs = (probes or {}).get(name) or timed_today(audit, name, workers)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001  # the model's own checks will report it; the plan goes on
            costs, probe_error = UnitCosts(0.0, 0.0), f"{type(exc).__name__}: {exc}"
        if not probe_error:
            # the choice the probe timed, at the threads the work runs at (an xdist worker's share,
            # in the probe's child process), or one by one where unit costs are given (as they are
            # priced): the jobs' parts follow it (the poisoning job's trainings), and this process
            # times nothing again at its own threads
            audit.zoo.follow_choice(name, costs.stacks)
        plan = ModelPlan(name, costs=costs, probe_error=probe_error)
        fresh: list = []  # one instance of the model, built when a cache key needs it

        def instance(name=name, fresh=fresh):
            if not fresh:
                torch.manual_seed(audit.config.seeds[0])
                fresh.append(audit.zoo.instantiate(audit.zoo.spec(name)))
            return fresh[0]

        for job, work in declared_work(audit, name).items():
            _price(audit, name, plan, job, work, instance)
        plans.append(plan)
    return AuditPlan(plans, workers, audit.device.type)


def _price(audit: AuditSession, name: str, plan: ModelPlan, job: str, work: Work, instance) -> None:
    """Add one job's declared work on the model to its plan, priced with the model's unit costs:
    trainings by their steps (stacked where the seeds the cache lacks can stack), attacks by their
    passes, a suite's units by their timed cost, other passes by the example (a forward pass costs
    about a third of a forward and backward one)."""
    from ..training.train import validation_passes

    config, data, costs = audit.config, audit.data, plan.costs
    per_example = costs.gradient / max(1, config.adversarial.n_examples)
    training_seconds, forward = 0.0, work.forward_examples
    for purpose, trainings in work.trainings.items():  # (a purpose's tags may be split among jobs)
        plan.trainings[purpose] = plan.trainings.get(purpose, 0) + trainings.count
        plan.epochs_per_training[purpose] = trainings.epochs
        if trainings.patience and purpose not in plan.early_stopping:
            plan.early_stopping.append(purpose)
        steps_per_epoch = trainings.steps_per_epoch(len(data.y_train), config.training.batch_size)
        # each training validates now and then, on the validation split and the probe's inputs
        forward += trainings.count * validation_passes(trainings.epochs, steps_per_epoch) * (
            len(data.y_val) + trainings.probe_examples)
        seconds = _training_seconds(audit, name, plan, purpose, trainings, trainings.epochs * steps_per_epoch, instance)
        plan.purpose_seconds[purpose] = plan.purpose_seconds.get(purpose, 0.0) + seconds
        training_seconds += seconds
    plan.gradient_passes += work.attack_gradient_passes
    plan.forward_passes += work.attack_forward_passes
    plan.other_forward_examples += forward
    plan.other_gradient_examples += work.gradient_examples
    attacks = (work.attack_gradient_passes + work.attack_forward_passes / 3) * costs.gradient
    other = (work.gradient_examples + forward / 3) * per_example
    parts = {"trainings": training_seconds, "attacks": attacks, "other passes": other}
    for unit, count in work.units.items():
        plan.units[unit] = plan.units.get(unit, 0) + count
        parts[unit] = count * costs.units.get(unit, 0.0)
    for part, seconds in parts.items():
        plan.parts[part] = plan.parts.get(part, 0.0) + seconds
    plan.job_seconds[job] = plan.job_seconds.get(job, 0.0) + sum(parts.values())


def _training_seconds(audit: AuditSession, name: str, plan: ModelPlan, purpose: str, trainings: Trainings,
                      steps: int, instance) -> float:
    """One purpose's trainings that the cache lacks, at the model's step cost; per tag, two or
    more missing seeds train as one stacked model."""
    costs, seeds = plan.costs, list(audit.config.seeds)
    missing: dict[str, int] = {}
    if trainings.tags:
        spec, model = audit.zoo.spec(name), instance()
        recipe = dataclasses.replace(audit.zoo.recipe, epochs=trainings.epochs, patience=trainings.patience)
        for tag, seed in trainings.pairs():
            absent = not audit.cache.contains(audit.zoo.training_key(spec, seed, tag, model, recipe))
            missing[tag] = missing.get(tag, 0) + absent
        plan.cached_trainings += trainings.count - sum(missing.values())
    if costs.stacked and any(m > 1 for m in missing.values()) and purpose not in plan.stacked:
        plan.stacked.append(purpose)
    seconds = 0.0
    for tag_missing in (missing.values() if trainings.tags else [trainings.count]):  # untagged: never cached
        if costs.stacked and tag_missing > 1:
            # a stack's step, timed with its setup: never counted above the lone steps it replaces
            seconds += steps * min(costs.stacked * tag_missing / len(seeds), tag_missing * costs.step)
        else:
            seconds += tag_missing * steps * costs.step
    return seconds


def plan_lines(plan: AuditPlan, max_minutes: float) -> list[str]:
    lines = [f"swiglu-audit plan ({plan.device}, {plan.workers} worker(s)): about "
             f"{_minutes(plan.seconds)} (an estimate from a timed probe of each model)"]
    for m in plan.models:
        trained = ", ".join(f"{count} {purpose} x {'up to ' if purpose in m.early_stopping else ''}"
                            f"{m.epochs_per_training[purpose]} epochs{' (seeds stacked)' if purpose in m.stacked else ''}"
                            for purpose, count in m.trainings.items()) or "none (pretrained)"
        # a model whose seeds train one by one says why (it cannot stack, or was timed clearly slower stacked)
        alone = f"; {m.costs.stacking}" if m.costs.stacking and not m.costs.stacks and m.trainings else ""
        lines.append(f"  {m.name}: trainings {trained} ({m.cached_trainings} cached){alone}; attack passes "
                     f"{m.gradient_passes} gradient + {m.forward_passes} forward; "
                     f"{m.step_seconds * 1000:.1f} ms/step, {m.gradient_seconds * 1000:.1f} ms/gradient pass; "
                     + (f"not timed ({m.probe_error})" if m.probe_error else f"about {_minutes(m.seconds)} of work ("
                        + ", ".join(f"{part} {_minutes(v)}" for part, v in m.parts.items()) + ")"))
    if max_minutes > 0:
        lines.append(f"  budget: max_minutes = {max_minutes:g}; the plan "
                     + ("fits" if plan.seconds <= max_minutes * 60 else "does NOT fit"))
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.2f} s"


def reused_probes(plan: AuditPlan) -> dict[str, UnitCosts]:
    """The unit costs a plan measured, to estimate its alternatives without probing again."""
    return {m.name: m.costs for m in plan.models}


@dataclass(frozen=True)
class BudgetOption:
    label: str  # what to set, in the user's words
    changes: dict  # the settings changed (config.apply_changes), which xdist workers apply too
    config: AuditConfig
    seconds: float  # its estimate, from the same probe


def budget_options(audit: AuditSession, plan: AuditPlan, workers: int) -> list[BudgetOption]:
    """Settings that cut the plan: two seeds instead of more; each suite's own cuts (catalogue
    `cuts`: a shorter trigger scan, a one-kind power panel, a family fewer poisoned or attacked
    by membership inference); fewer seeds with each of those. Estimates reuse the probe's unit costs."""
    from ..measure import declared

    config = audit.config
    options: list[tuple[str, dict]] = []
    if len(config.seeds) > 2:
        options.append((f"seeds = {list(config.seeds[:2])} (or {OPT_SEEDS}={','.join(map(str, config.seeds[:2]))})",
                        {"seeds": list(config.seeds[:2])}))
    for cuts in declared("cuts").values():
        options += cuts(audit)
    if len(options) > 1 and options[0][0].startswith("seeds"):
        label, fewer_seeds = options[0]
        options += [(f"{label}, and {other_label}", {**other, **fewer_seeds}) for other_label, other in options[1:]]
    probes = reused_probes(plan)
    out = []
    for label, changes in options:
        option = apply_changes(config, changes)
        out.append(BudgetOption(label, changes, option, make_plan(audit.with_config(option), workers, probes).seconds))
    return out


def budget_problem(plan: AuditPlan, budget: float, options: list[BudgetOption]) -> str:
    """"" when the plan fits `budget` minutes; else the message of the usage error: the estimate,
    and the settings that would cut it, each with its estimate."""
    if budget <= 0 or plan.seconds <= budget * 60:
        return ""
    fits = [f"  - {o.label}: about {_minutes(o.seconds)}" + (" (fits)" if o.seconds <= budget * 60 else "")
            for o in options]
    return (f"the plan needs about {_minutes(plan.seconds)}, more than max_minutes = {budget:g}. Settings that "
            "cut it (estimates from the same probe):\n" + "\n".join(fits or ["  - none found: raise max_minutes"])
            + "\nChange the settings, raise max_minutes, run on a faster device, or accept the first that fits "
            "with --swiglu-audit-accept-reduced-plan.")
