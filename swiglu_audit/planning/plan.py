"""The audit's cost before paying it: what will be trained and attacked per model and suite, how
much of it the checkpoint cache already holds, and an estimate of the time from a short timed
probe of each model on the audit's device (a few training steps, one input-gradient pass).

The counts follow the suites' own definitions (`measure.poisoning.conditions`, the attack list,
the budget curves); the estimate multiplies them by the probe's unit costs and divides by the
number of xdist workers. Besides trainings and attacks it counts the other passes over data that
grow with the model and the data (`other_passes`): validation during training, the OOD suite's
inputs, corruptions and training-set features, the poison detectors' features and the trigger
scan's optimisation. On a CPU the probe runs at the thread count each worker will have, since the
workers split the cores. It leaves out statistics, scikit-learn's own work and start-up, and
assumes the workers share the work evenly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..config import OPT_SEEDS
from ..errors import CacheError, ConfigError
from ..methods.backdoor_scan import inputs_per_step, reverse_engineer
from ..training.device import autocast
from ..training.nn import eval_mode

if TYPE_CHECKING:
    from ..config import AuditConfig
    from ..session import AuditSession

PROBE_ENV = "SWIGLU_AUDIT_PROBE_SECONDS"
PROBE_WARMUP, PROBE_STEPS = 3, 7  # untimed calls (allocation, kernel choice), then timed ones
SCAN_INPUTS = inputs_per_step()  # inputs per class and step of the trigger scan at its default settings
# Where the unit costs are given without a scan step: a trigger-scan step costs about two
# input-gradient passes over its inputs (stamping, mask and pattern gradients, Adam): 115 ms
# against 54 ms for a small CNN on 32x32 images.
SCAN_STEP_PASSES = 2.0
SHORT_SCAN_STEPS = 50  # the trigger scan's steps in the budget's cheaper alternative


@dataclass
class ModelPlan:
    name: str
    trainings: dict[str, int] = field(default_factory=dict)  # what for -> count
    cached_trainings: int = 0
    epochs_per_training: dict[str, int] = field(default_factory=dict)
    early_stopping: list[str] = field(default_factory=list)  # purposes whose trainings may stop early
    gradient_passes: int = 0  # input-gradient passes of the attacks, each over the attack set
    forward_passes: int = 0  # forward-only passes (query attacks), each over the attack set
    other_forward_examples: int = 0  # examples passed forward by the rest of the audit (other_passes)
    other_gradient_examples: int = 0  # examples passed forward and backward by the rest of the audit
    scan_steps: int = 0  # optimisation steps of the trigger scan, each over SCAN_INPUTS inputs
    step_seconds: float = 0.0
    gradient_seconds: float = 0.0
    scan_step_seconds: float = 0.0
    stacked_step_seconds: float = 0.0  # one step of all the audit's seeds stacked; 0: not stacked
    stacked: list[str] = field(default_factory=list)  # purposes whose seeds train as one stacked model
    parts: dict[str, float] = field(default_factory=dict)  # estimated seconds by part of the work
    purpose_seconds: dict[str, float] = field(default_factory=dict)  # the trainings' part, by purpose
    other_seconds_by_job: dict[str, float] = field(default_factory=dict)  # "other passes", by the job doing them

    probe_error: str = ""  # why the probe could not time this model (its time is then left out)

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    def seconds_by_job(self) -> dict[str, float]:
        """The estimate split by the job of the audit's graph that does the work (PURPOSE_JOB;
        "checks": what the pytest items do themselves); the parts sum to `seconds`."""
        out: dict[str, float] = dict.fromkeys(("training", "adversarial", "poisoning", "ood", "privacy", "checks"), 0.0)
        for purpose, value in self.purpose_seconds.items():
            out[PURPOSE_JOB.get(purpose, "checks")] += value
        for job, value in self.other_seconds_by_job.items():
            out[job] = out.get(job, 0.0) + value
        out["adversarial"] += self.parts.get("attacks", 0.0)
        out["poisoning"] += self.parts.get("trigger scan", 0.0)
        return out


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
                            "other_gradient_examples": m.other_gradient_examples, "scan_steps": m.scan_steps,
                            "estimated_seconds_by_part": {k: round(v, 1) for k, v in m.parts.items()},
                            "training_seconds_by_purpose": {k: round(v, 2) for k, v in m.purpose_seconds.items()},
                            "seconds_by_job": {k: round(v, 2) for k, v in m.seconds_by_job().items()},
                            "probe_step_seconds": m.step_seconds, "probe_gradient_seconds": m.gradient_seconds,
                            "probe_scan_step_seconds": m.scan_step_seconds,
                            "probe_stacked_step_seconds": m.stacked_step_seconds, "stacked": m.stacked,
                            "estimated_seconds": round(m.seconds, 1), "probe_error": m.probe_error or None}
                           for m in self.models]}


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

    def steps_per_epoch(self, n_train: int, batch_size: int) -> int:
        return math.ceil((self.examples or n_train) / batch_size)

    def pairs(self) -> list[tuple[str, int]]:
        return list(zip(self.tags, self.seeds, strict=True)) if self.paired else [(t, s) for t in self.tags for s in self.seeds]


def training_counts(config: AuditConfig, audit: AuditSession, name: str) -> dict[str, Trainings]:
    """What each model is trained for, by purpose."""
    from ..measure.poisoning import (
        conditions,
        fine_tune_epochs,
        fine_tunes,
        model_config,
        out_of_scope,
        panel_conditions,
        patience,
        poisoned_seeds,
        poisoned_tag,
    )

    spec = audit.zoo.spec(name)
    if spec.weights:
        return {}
    epochs, seeds = config.training.epochs, tuple(config.seeds)
    out = {"clean": Trainings(["clean"], epochs, seeds)}
    if out_of_scope(audit, name) is None:
        # detection and the scan's power read the backdoor at detection_rate, one of these sets
        conds = conditions(model_config(audit, name))
        retrained = [c for c in conds if not fine_tunes(audit, name, c)]
        fine_tuned = [c for c in conds if fine_tunes(audit, name, c)]
        poisoned = poisoned_seeds(audit, name)
        if retrained:
            out["poisoning"] = Trainings([poisoned_tag(audit, name, c) for c in retrained], epochs, poisoned)
        if fine_tuned:
            out["poisoning fine-tuned"] = Trainings([poisoned_tag(audit, name, c) for c in fine_tuned],
                                                    fine_tune_epochs(config), poisoned,
                                                    patience(audit, name, fine_tuned[0]))
        # the scan's power panel: each threat trigger kind, the first seed only (a set that is
        # also one of the suite's conditions is trained, and counted, once)
        tags = {poisoned_tag(audit, name, c) for c in conds}
        panel = [c for c in panel_conditions(config.poisoning) if poisoned_tag(audit, name, c) not in tags]
        if panel:
            fine = fine_tunes(audit, name, panel[0])  # every panel set is a backdoor: all or none fine-tune
            out["scan power panel"] = Trainings([poisoned_tag(audit, name, c) for c in panel],
                                                fine_tune_epochs(config) if fine else epochs, poisoned[:1],
                                                patience(audit, name, panel[0]))
    from ..measure import privacy

    if privacy.out_of_scope(audit, name) is None:
        # RMIA's reference models, each on its half of all the records
        k = config.privacy.reference_models
        out["privacy reference"] = Trainings([privacy.reference_tag(audit, i) for i in range(k)], epochs,
                                             tuple(privacy.REFERENCE_SEED + i for i in range(k)), paired=True,
                                             examples=privacy.population_size(audit)[0] // 2)
    out["determinism"] = Trainings([], config.numerical.determinism_epochs, (0, 1))  # twice, never cached
    return out


def attack_passes(config: AuditConfig, n_classes: int) -> tuple[int, int]:
    """(input-gradient passes, forward passes) over the attack set per model and seed, as the
    adversarial measurements declare them."""
    from ..measure.adversarial import planned_passes

    return planned_passes(config, n_classes)


# which job of the audit's graph (jobs/audit_jobs.py) does the work of each training purpose;
# "checks": what the pytest items do themselves (the determinism check, deployment, fairness)
PURPOSE_JOB = {"clean": "training", "poisoning": "poisoning", "poisoning fine-tuned": "poisoning",
               "scan power panel": "poisoning", "privacy reference": "privacy", "determinism": "checks"}


def other_passes_by_job(config: AuditConfig, audit: AuditSession, name: str,
                        trainings: dict[str, Trainings]) -> dict[str, tuple[int, int]]:
    """(examples passed forward, examples passed forward and backward) by everything but the
    training steps, the attacks and the trigger scan, for one model, following the suites'
    code; by the job that does them (PURPOSE_JOB's names, and "ood")."""
    from ..measure import deployment, ood, poisoning, privacy
    from ..training.train import OUTLIER_PROBE, validation_passes

    data, seeds = audit.data, len(config.seeds)
    batch = config.training.batch_size
    out: dict[str, list[int]] = {}

    def add(job: str, forward: int, gradient: int = 0) -> None:
        totals = out.setdefault(job, [0, 0])
        totals[0] += forward
        totals[1] += gradient

    # each validation pass of a clean training also passes OUTLIER_PROBE inputs for the FFN's outliers
    for kind, t in trainings.items():
        add(PURPOSE_JOB.get(kind, "checks"), (len(t.pairs()) if t.tags else len(t.seeds))
            * validation_passes(t.epochs, t.steps_per_epoch(len(data.y_train), batch))
            * (len(data.y_val) + (min(OUTLIER_PROBE, len(data.y_val)) if kind == "clean" else 0)))
    ood_forward, ood_gradient = ood.planned_passes(config, data)
    add("ood", seeds * ood_forward, seeds * ood_gradient)
    add("poisoning", poisoning.planned_passes(audit, name)[0])
    if privacy.out_of_scope(audit, name) is None:  # the records attacked, by each seed and reference model
        n_targets = 2 * min(len(data.y_train), len(data.y_val) + len(data.y_test))
        add("privacy", (seeds + config.privacy.reference_models) * n_targets)
    # the fairness suite's group metrics predict the whole test split once per seed (its class
    # metrics reuse the other suites' outcomes)
    fairness_forward = len(data.y_test) if data.groups_test is not None else 0
    add("checks", seeds * (deployment.planned_passes(config) + fairness_forward))
    return {job: (f, g) for job, (f, g) in out.items()}


def other_passes(config: AuditConfig, audit: AuditSession, name: str,
                 trainings: dict[str, Trainings]) -> tuple[int, int, int]:
    """(examples passed forward, examples passed forward and backward, trigger-scan steps) by
    everything but the training steps and the attacks, for one model, following the suites' code."""
    from ..measure import poisoning

    by_job = other_passes_by_job(config, audit, name, trainings)
    forward, gradient = sum(f for f, _ in by_job.values()), sum(g for _, g in by_job.values())
    # the scan counted in steps over SCAN_INPUTS inputs (a step's cost is about linear in its inputs)
    return forward, gradient, round(poisoning.planned_passes(audit, name)[1] / SCAN_INPUTS)


def probe(audit: AuditSession, name: str, workers: int = 1) -> tuple[float, float, float, float]:
    """(seconds per training step, per input-gradient pass over the attack set, per trigger-scan
    step, per stacked training step of all the audit's seeds together, or 0 where the model
    does not stack) of a fresh copy of the model on the audit's device, each the median of a few timed
    repetitions; or the unit costs given in SWIGLU_AUDIT_PROBE_SECONDS ("step,gradient[,scan]"):
    to plan a run on another machine from costs measured there, or to make the plan reproducible.
    On a CPU it runs at the thread count each of `workers` xdist workers will have (the scan at
    one thread, as the scan itself runs)."""
    n = audit.config.adversarial.n_examples
    given = os.environ.get(PROBE_ENV)
    if given:
        try:
            values = [float(v) for v in given.split(",")]
            if len(values) not in (2, 3) or min(values) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{PROBE_ENV}={given!r}: give two or three numbers of seconds, "
                              "\"<training step>,<gradient pass>[,<scan step>]\", e.g. \"0.004,0.002\"") from None
        scan = values[2] if len(values) == 3 else values[1] * SCAN_INPUTS / max(1, n) * SCAN_STEP_PASSES
        return values[0], values[1], scan, 0.0  # no stacked step given: trainings counted one by one
    spec, data, device = audit.zoo.spec(name), audit.data, audit.device
    torch.manual_seed(0)
    model = audit.zoo.instantiate(spec).to(device).train()  # a fresh model: the audit's are untouched
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

    xs = data.x_train[:SCAN_INPUTS]

    def scan_step():  # one step of one class's optimisation, in eval mode as the scan runs
        with eval_mode(model):
            reverse_engineer(model, xs, 0, device, steps=1)

    threads = torch.get_num_threads()
    if device.type == "cpu" and workers > 1:  # as session._share_cores_with_other_workers will
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    try:
        step_s, grad_s = _median_seconds(train_step, device), _median_seconds(gradient_pass, device)
        stacked_s = _stacked_step_seconds(model, x, y, len(audit.config.seeds), device)
        if device.type == "cpu":
            torch.set_num_threads(1)
        return step_s, grad_s, _median_seconds(scan_step, device), stacked_s
    finally:
        torch.set_num_threads(threads)


def timed_today(audit: AuditSession, name: str, workers: int) -> tuple[float, float, float, float]:
    """`probe`, kept in the cache folder for the rest of the day (UTC) on this machine: a warm
    audit re-plans without timing every model again. The entry is keyed by what the unit costs
    depend on (the model and its parameters' shapes, the data's shape, the device, the threads per
    worker, torch, the host), so another machine, setting or model times afresh; the day bounds how stale a machine's
    speed, which drifts from day to day, can be. Unit costs given in SWIGLU_AUDIT_PROBE_SECONDS
    are used as given."""
    from ..training.cache import cache_key

    if os.environ.get(PROBE_ENV):
        return probe(audit, name, workers)
    data, device = audit.data, audit.device
    spec = audit.zoo.spec(name)
    shapes = [(k, list(v.shape)) for k, v in audit.zoo.instantiate(spec).state_dict().items()]  # an edited model
    key = cache_key({"kind": "probe", "spec": spec.to_dict(), "params": shapes, "input": list(data.input_shape),
                     "classes": data.n_classes, "device": str(device), "workers": workers,
                     "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "host": platform.node(), "day": time.strftime("%Y-%m-%d", time.gmtime()),
                     "batch": audit.config.training.batch_size, "attack_set": audit.config.adversarial.n_examples,
                     "seeds": len(audit.config.seeds), "stacking": os.environ.get("SWIGLU_AUDIT_STACK", "")})
    # through the cache's signed result entries: with SWIGLU_AUDIT_CACHE_KEY a planted probe,
    # which would decide max_minutes and the cut, is not trusted
    try:
        arrays, _ = audit.cache.get_or_create_arrays(
            key, lambda: ({"unit_costs": np.array(probe(audit, name, workers), dtype=np.float64)}, {}), kind="probe")
    except (CacheError, OSError):  # a cache that cannot be written still plans, by timing each time
        return probe(audit, name, workers)
    step_s, grad_s, scan_s, stacked_s = (float(v) for v in arrays["unit_costs"])
    return step_s, grad_s, scan_s, stacked_s


def _stacked_step_seconds(model, x, y, members: int, device: torch.device) -> float:
    """One training step of `members` copies of the model stacked (training/stacked.py), as a
    one-step stacked training over one batch: its setup is timed too, so it is an upper bound.
    0 where the model does not stack (or stacking is off): its trainings are counted one by one."""
    from ..training.stacked import NotStackable, stackable, train_stacked
    from ..training.train import Recipe
    from ..training.zoo import stacking_enabled

    copies = [copy.deepcopy(model) for _ in range(members)]
    if members < 2 or not stacking_enabled() or stackable(copies) is not None:
        return 0.0
    recipe = Recipe(epochs=1, batch_size=len(x))
    try:
        return _median_seconds(lambda: train_stacked(copies, [x] * members, [y] * members, recipe,
                                                     list(range(members)), device), device)
    except NotStackable:
        return 0.0


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


def make_plan(audit: AuditSession, workers: int,
              probes: dict[str, tuple[float, float, float, float]] | None = None) -> AuditPlan:
    """The plan of this audit. `probes` reuses unit costs measured before (for alternatives)."""
    config, data = audit.config, audit.data
    grads, forwards = attack_passes(config, data.n_classes)
    seeds = list(config.seeds)
    plans = []
    for name in audit.zoo.specs:
        spec = audit.zoo.spec(name)
        probe_error = ""
        try:
            step_s, grad_s, scan_s, stacked_s = (probes or {}).get(name) or timed_today(audit, name, workers)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001  # the model's own checks will report it; the plan goes on
            step_s, grad_s, scan_s, stacked_s, probe_error = 0.0, 0.0, 0.0, 0.0, f"{type(exc).__name__}: {exc}"
        plan = ModelPlan(name, step_seconds=step_s, gradient_seconds=grad_s, scan_step_seconds=scan_s,
                         stacked_step_seconds=stacked_s, probe_error=probe_error)
        training_seconds = 0.0
        model = None
        counts = training_counts(config, audit, name)
        for purpose, trainings in counts.items():
            count = len(trainings.pairs()) if trainings.tags else len(trainings.seeds)  # determinism: no tag, trained twice
            plan.trainings[purpose] = count
            plan.epochs_per_training[purpose] = trainings.epochs
            if trainings.patience:
                plan.early_stopping.append(purpose)
            # per tag: the seeds the cache lacks; two or more of them train as one stacked model
            missing: dict[str, int] = {}
            if trainings.tags:
                if model is None:
                    torch.manual_seed(seeds[0])
                    model = audit.zoo.instantiate(spec)
                recipe = dataclasses.replace(audit.zoo.recipe, epochs=trainings.epochs, patience=trainings.patience)
                for tag, seed in trainings.pairs():
                    absent = not audit.cache.contains(audit.zoo.training_key(spec, seed, tag, model, recipe))
                    missing[tag] = missing.get(tag, 0) + absent
            cached = count - sum(missing.values()) if trainings.tags else 0
            plan.cached_trainings += cached
            steps = trainings.epochs * trainings.steps_per_epoch(len(data.x_train), config.training.batch_size)
            if stacked_s and any(m > 1 for m in missing.values()):
                plan.stacked.append(purpose)
            purpose_seconds = 0.0
            for tag_missing in (missing.values() if trainings.tags else [count]):
                if stacked_s and tag_missing > 1:
                    # a stack's step, timed with its setup: never counted above the lone steps it replaces
                    purpose_seconds += steps * min(stacked_s * tag_missing / len(seeds), tag_missing * step_s)
                else:
                    purpose_seconds += tag_missing * steps * step_s
            plan.purpose_seconds[purpose] = purpose_seconds
            training_seconds += purpose_seconds
        plan.gradient_passes, plan.forward_passes = grads * len(seeds), forwards * len(seeds)
        plan.other_forward_examples, plan.other_gradient_examples, plan.scan_steps = other_passes(config, audit, name, counts)
        per_example = grad_s / max(1, config.adversarial.n_examples)
        plan.other_seconds_by_job = {job: gradient * per_example + forward * per_example / 3
                                     for job, (forward, gradient) in other_passes_by_job(config, audit, name, counts).items()}
        plan.parts = {"trainings": training_seconds,
                      # a forward pass costs about a third of a forward and backward one
                      "attacks": plan.gradient_passes * grad_s + plan.forward_passes * grad_s / 3,
                      "trigger scan": plan.scan_steps * scan_s,
                      "other passes": plan.other_gradient_examples * per_example + plan.other_forward_examples * per_example / 3}
        plans.append(plan)
    return AuditPlan(plans, workers, audit.device.type)


def plan_lines(plan: AuditPlan, max_minutes: float) -> list[str]:
    lines = [f"swiglu-audit plan ({plan.device}, {plan.workers} worker(s)): about "
             f"{_minutes(plan.seconds)} (an estimate from a timed probe of each model)"]
    for m in plan.models:
        trained = ", ".join(f"{count} {purpose} x {'up to ' if purpose in m.early_stopping else ''}"
                            f"{m.epochs_per_training[purpose]} epochs{' (seeds stacked)' if purpose in m.stacked else ''}"
                            for purpose, count in m.trainings.items()) or "none (pretrained)"
        lines.append(f"  {m.name}: trainings {trained} ({m.cached_trainings} cached); attack passes "
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


def reused_probes(plan: AuditPlan) -> dict[str, tuple[float, float, float, float]]:
    """The unit costs a plan measured, to estimate its alternatives without probing again."""
    return {m.name: (m.step_seconds, m.gradient_seconds, m.scan_step_seconds, m.stacked_step_seconds)
            for m in plan.models}


def budget_options(audit: AuditSession, plan: AuditPlan, workers: int) -> list[tuple[str, AuditConfig, float]]:
    """Settings that cut the plan, each as (what to set, the changed configuration, its estimate):
    two seeds instead of more; a shorter trigger scan; a one-kind power panel; one family fewer
    retrained on poisoned data; one family fewer attacked by membership inference;
    fewer seeds with each of the others. Estimates reuse the probe's unit costs."""
    from ..measure.poisoning import out_of_scope

    config = audit.config
    probes = reused_probes(plan)
    families = list(config.poisoning.families)
    poisoned = {audit.zoo.spec(n).scope_family for n in audit.zoo.specs if out_of_scope(audit, n) is None}
    options: list[tuple[str, AuditConfig]] = []
    if len(config.seeds) > 2:
        options.append((f"seeds = {list(config.seeds[:2])} (or {OPT_SEEDS}={','.join(map(str, config.seeds[:2]))})",
                        dataclasses.replace(config, seeds=tuple(config.seeds[:2]))))
    if poisoned and config.poisoning.scan_steps > SHORT_SCAN_STEPS:
        options.append((f"[tool.swiglu_audit.poisoning] scan_steps = {SHORT_SCAN_STEPS} (a weaker trigger scan; its "
                        "measured power on the planted backdoor still decides whether \"nothing found\" passes)",
                        dataclasses.replace(config, poisoning=dataclasses.replace(config.poisoning, scan_steps=SHORT_SCAN_STEPS))))
    if poisoned and len(config.poisoning.threat_triggers) > 1:
        narrow = config.poisoning.threat_triggers[:1]
        options.append((f"[tool.swiglu_audit.poisoning] threat_triggers = {list(narrow)} (the scan's power measured on "
                        "one trigger kind: its \"nothing found\" then covers that kind alone)",
                        dataclasses.replace(config, poisoning=dataclasses.replace(config.poisoning, threat_triggers=narrow))))
    for dropped in [f for f in ("user", "vit", "mlp") if f in families and f in poisoned]:
        kept = [f for f in families if f != dropped]
        options.append((f"[tool.swiglu_audit.poisoning] families = {kept} (no retraining of the {dropped} models "
                        "on poisoned data)", dataclasses.replace(config, poisoning=dataclasses.replace(config.poisoning, families=tuple(kept)))))
    from ..measure import privacy

    attacked = {audit.zoo.spec(n).scope_family for n in audit.zoo.specs if privacy.out_of_scope(audit, n) is None}
    for dropped in [f for f in ("user", "vit", "mlp") if f in config.privacy.families and f in attacked]:
        kept = [f for f in config.privacy.families if f != dropped]
        if kept:
            options.append((f"[tool.swiglu_audit.privacy] families = {kept} (no membership inference on the {dropped} "
                            "models: their reference models are not trained)",
                            dataclasses.replace(config, privacy=dataclasses.replace(config.privacy, families=tuple(kept)))))
    if len(options) > 1 and options[0][0].startswith("seeds"):
        label, fewer_seeds = options[0]
        options += [(f"{label}, and {other_label}", dataclasses.replace(other, seeds=fewer_seeds.seeds))
                    for other_label, other in options[1:]]
    return [(label, option, make_plan(audit.with_config(option), workers, probes).seconds) for label, option in options]


def budget_problem(plan: AuditPlan, budget: float, options: list[tuple[str, AuditConfig, float]]) -> str:
    """"" when the plan fits `budget` minutes; else the message of the usage error: the estimate,
    and the settings that would cut it, each with its estimate."""
    if budget <= 0 or plan.seconds <= budget * 60:
        return ""
    fits = [f"  - {label}: about {_minutes(seconds)}" + (" (fits)" if seconds <= budget * 60 else "")
            for label, _, seconds in options]
    return (f"the plan needs about {_minutes(plan.seconds)}, more than max_minutes = {budget:g}. Settings that "
            "cut it (estimates from the same probe):\n" + "\n".join(fits or ["  - none found: raise max_minutes"])
            + "\nChange the settings, raise max_minutes, run on a faster device, or accept the first that fits "
            "with --swiglu-audit-accept-reduced-plan.")
