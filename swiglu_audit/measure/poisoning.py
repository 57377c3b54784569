"""Poisoning measurements per model: retrain on poisoned data, measure, memoise per process.

Every poisoned training set is built once from the clean one with a fixed seed, so every
architecture and every training seed sees the same poison, and the poisoned models are cached
like clean ones (the condition is part of their cache key). Results are (seeds x examples)
matrices, the shape `stats` works on.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..checks.poison_detection import census_facts, relabelled_group, sample_facts, smallest_failing_group
from ..methods import backdoor_scan, image_rows, poison_detectors, poisoning, relabel_census, shifted_copies, triggers
from ..methods import integrity as integrity_methods
from ..methods.integrity import NearDuplicateIndex, exact_duplicates, label_issues, near_duplicates
from ..methods.poison_detectors import detection_metrics, run_detectors
from ..methods.poisoning import POISONING_ATTACKS, PoisonedSet, PoisonParams, add_trigger
from ..training import features as features_module
from ..training.cache import code_digest
from ..training.features import penultimate_features
from ..training.planned import Part, Trainings, Unit, Work, total
from ..training.specs import USER_GROUP
from ..training.zoo_stacking import TrainingRequest
from ..verdicts.risk import json_safe
from .adversarial import clean_correct
from .predictions import predicted_as

if TYPE_CHECKING:  # the session is passed in; this layer never imports it at run time
    from ..session import AuditSession
    from ..settings import PoisoningSettings

POISON_SEED = 0  # one poisoned training set per condition, shared by every model and seed
TRAININGS_PART = "trainings"  # the poisoning job's part that trains every poisoned model


HARNESS_TRIGGER = "corner_patch"


@dataclass(frozen=True)
class Condition:
    attack: str  # "flip", "targeted", "backdoor" or "clean_label"
    rate: float
    trigger: str = HARNESS_TRIGGER  # the backdoor's trigger kind (methods.triggers)

    def tag(self, cfg: PoisoningSettings) -> str:
        """Names the poisoned training set in cache keys: every parameter that shapes it (a panel
        kind's name carries the digest of the code that draws it)."""
        kind = "" if self.trigger == HARNESS_TRIGGER else f"-{self.trigger}{_TRIGGER_DIGEST[:8]}"
        params = {"flip": "", "targeted": f"-pair{cfg.targeted_pair[0]}to{cfg.targeted_pair[1]}",
                  "backdoor": f"-target{cfg.backdoor_target}-size{cfg.trigger_size}{kind}",
                  "clean_label": f"-target{cfg.backdoor_target}-size{cfg.trigger_size}{kind}"}
        # the code that builds the poisoned set is part of its name: a change to it retrains
        return f"{self.attack}-{self.rate}{params[self.attack]}-seed{POISON_SEED}-code{_ATTACK_DIGEST[:12]}"


def conditions(cfg: PoisoningSettings) -> list[Condition]:
    out = [Condition("flip", r) for r in cfg.flip_rates]
    out += [Condition("targeted", r) for r in cfg.targeted_rates]
    out += [Condition("backdoor", r) for r in cfg.backdoor_rates]
    if cfg.clean_label:
        out.append(Condition("clean_label", max(cfg.backdoor_rates)))
    return out


def out_of_scope(audit: AuditSession, name: str) -> str | None:
    """Why this model is not poisoned in this audit, or None when it is."""
    spec, families = audit.zoo.spec(name), audit.config.poisoning.families
    if spec.weights:
        return f"'{name}' is loaded from pretrained weights; the poisoning suite needs to retrain it"
    group = spec.scope_family
    if group not in families:
        return (f"the {group} family is not in [tool.swiglu_audit.poisoning] families = {list(families)} "
                f"(profile '{audit.config.profile}'); add it there to poison it")
    return None


def poisoned_set(audit: AuditSession, cond: Condition) -> PoisonedSet:
    def build():
        data = audit.data
        if cond.trigger != HARNESS_TRIGGER:  # a kind of the scan's power panel
            return poisoning.backdoor(data.x_train, data.y_train, _target(audit), cond.rate,
                                      audit.config.poisoning.trigger_size, POISON_SEED,
                                      clean_label=cond.attack == "clean_label", stamp=triggers.STAMPS[cond.trigger])
        params = PoisonParams(data.n_classes, _pair(audit), _target(audit), audit.config.poisoning.trigger_size,
                              POISON_SEED)
        return POISONING_ATTACKS[cond.attack](data.x_train, data.y_train, cond.rate, params)
    return audit.memo(("poisoned-set", cond), build)


def panel_conditions(cfg: PoisoningSettings) -> list[Condition]:
    """The planted backdoors the scan's power is measured on: each threat trigger kind at the
    threat rate (the harness's corner patch at detection_rate is the detectors' set too)."""
    return [Condition("backdoor", cfg.threat_rate, kind) for kind in cfg.threat_triggers]


# Fine-tuning the clean checkpoint measures the same backdoor risk as retraining (attack success
# agreed within the intervals for all five MLPs), but not the label-flipping risks: a quarter of
# the epochs on flipped labels degraded the models about five times less than retraining did
# (bench/poison-finetune-all-attacks.json). Those sets are always retrained.
FINE_TUNED_ATTACKS = ("backdoor", "clean_label")
# The trigger scan of a model poisoned the cheaper way (scan_settings): on a user's CNN with
# 32x32 inputs the full scan costs more than all its poisoned trainings; this one costs a
# quarter of it, with the same targets and flags in the cases of bench/scan-cost-cnn.json. Its
# power is measured on each model like the full scan's, so a weaker scan says "inconclusive".
CHEAPER_SCAN_STEPS = 100
CHEAPER_SCAN_PER_CLASS = 30
# A model whose attack success on the harness's planted backdoor stays this close to the base rate
# has not learned it, and no scan can find what the model does not carry: in the 21 cases of
# bench/trigger-scan-mlp.json with success below 0.15 the scan found neither the target nor a
# sample. Its power is then nil without running the scan (the verdict says why).
MIN_LEARNED_BACKDOOR = 0.1


def cheaper(audit: AuditSession, name: str) -> bool:
    """Is `name` poisoned the cheaper way (fine-tuned backdoor sets with early stopping, fewer rates,
    cheaper_seeds seeds, the cheaper scan)? The one place that reads `poisoning.mode`: "auto" by
    owner (users' models), "cheaper" (formerly "fine_tune") for every model, "retrain" for none."""
    mode = audit.config.poisoning.mode
    return mode in ("cheaper", "fine_tune") or (mode == "auto" and audit.zoo.spec(name).group == USER_GROUP)


def fine_tunes(audit: AuditSession, name: str, cond: Condition) -> bool:
    """Is `name` trained on the poisoned set `cond` by fine-tuning its clean checkpoint rather than
    from scratch? Only where it is poisoned the cheaper way, and only for the attacks where both
    measure the same risk."""
    return cheaper(audit, name) and cond.attack in FINE_TUNED_ATTACKS


def patience(audit: AuditSession, name: str, cond: Condition) -> int:
    """Early-stopping patience of `name`'s training on `cond` (0: it runs every epoch): fine-tuned
    sets only. Stopping on clean validation accuracy is a defence against label noise, so the
    retrained label-flipping sets run every epoch: early stopping made the flips look three times
    less harmful on the zoo (bench/poison-cheaper-early-stopping.json)."""
    return audit.config.poisoning.early_stopping_patience if fine_tunes(audit, name, cond) else 0


def poisoned_seeds(audit: AuditSession, name: str) -> tuple[int, ...]:
    """The seeds `name` is trained for on poisoned sets: the first `cheaper_seeds` where it is
    poisoned the cheaper way, else every seed. The comparisons resample each model's seeds on
    their own, so a model with fewer poisoned seeds is compared with wider intervals, not wrongly."""
    seeds, keep = tuple(audit.config.seeds), audit.config.poisoning.cheaper_seeds
    return seeds[:keep] if cheaper(audit, name) and 0 < keep < len(seeds) else seeds


def clean_rows(audit: AuditSession, name: str, matrix: np.ndarray) -> np.ndarray:
    """The rows of a (seeds x examples) matrix of the clean models that pair with the poisoned ones."""
    return matrix[:len(poisoned_seeds(audit, name))]


def fine_tune_epochs(config) -> int:
    return max(1, math.ceil(config.poisoning.fine_tune_share * config.training.epochs))


def model_config(audit: AuditSession, name: str) -> PoisoningSettings:
    """The poisoning settings for one model. Poisoned the cheaper way, it is poisoned at fewer rates:
    the largest flip and targeted rates, and the backdoor at detection_rate and at the largest rate."""
    cfg = audit.config.poisoning
    if not cheaper(audit, name):
        return cfg
    backdoor = sorted({cfg.detection_rate, max(cfg.backdoor_rates)})
    return dataclasses.replace(cfg, flip_rates=(max(cfg.flip_rates),), targeted_rates=(max(cfg.targeted_rates),),
                               backdoor_rates=tuple(backdoor))


def poisoned_tag(audit: AuditSession, name: str, cond: Condition) -> str:
    """The cache tag of `name` trained on the poisoned set `cond`; a fine-tuned model's names the
    clean epochs it starts from and its own."""
    tag = cond.tag(audit.config.poisoning)
    if fine_tunes(audit, name, cond):
        tag += f"-finetune{fine_tune_epochs(audit.config)}of{audit.config.training.epochs}"
    return tag


def _request(audit: AuditSession, name: str, cond: Condition, first_seed_only: bool) -> TrainingRequest:
    """`name`'s trainings on the poisoned set `cond`: every poisoned seed, or the first seed's alone
    (the scan's power reads that model only; it shares the cache entry)."""
    poisoned = poisoned_set(audit, cond)
    seeds = poisoned_seeds(audit, name)
    # a set the suite trains for every seed anyway is trained for all of them at once (stacked),
    # whichever measurement asks first: the first seed's weights do not depend on the order
    first_seed_only = first_seed_only and cond not in conditions(model_config(audit, name))
    return TrainingRequest(poisoned_tag(audit, name, cond), poisoned.x, poisoned.y,
                           seeds[:1] if first_seed_only else seeds,
                           fine_tune_epochs(audit.config) if fine_tunes(audit, name, cond) else None,
                           patience(audit, name, cond))


def train_poisoned_sets(audit: AuditSession, name: str) -> None:
    """Every poisoned training of `name` the suite will ask for (its sets for every poisoned seed,
    the power panel's other kinds for the first), trained together: the members that share a
    schedule stack across sets (`Zoo.train_together`), where one set's seeds alone would make
    stacks of three. Every measurement of the suite asks for this first, in every way an audit
    runs (serial, xdist, the job graph's trainings part where the model stacks), so that the
    same trainings stack the same way, and round the same way, whichever asks; a selection of
    some poisoning checks alone (`-k`) trains every set too. What the cache holds is read, not trained (memoised per model
    until the session forgets its results)."""
    if out_of_scope(audit, name) is not None:
        return

    def train() -> bool:
        cfg = model_config(audit, name)
        requests = [_request(audit, name, cond, False) for cond in conditions(cfg)]
        requests += [_request(audit, name, cond, True) for cond in panel_conditions(audit.config.poisoning)
                     if cond not in conditions(cfg)]
        audit.zoo.train_together(name, requests)
        return True
    audit.memo(("poisoned-trainings", name), train)


def poisoned_models(audit: AuditSession, name: str, cond: Condition, first_seed_only: bool = False):
    """`name`'s models trained on the poisoned set `cond`, one per poisoned seed (or the first
    seed's alone: the scan's power reads that model only; it shares the cache entry); every
    poisoned set of the model is trained at the first call (`train_poisoned_sets`)."""
    train_poisoned_sets(audit, name)
    request = _request(audit, name, cond, first_seed_only)
    return audit.zoo.models(name, labels=request.labels, inputs=request.inputs, tag=request.tag,
                            fine_tune_epochs=request.fine_tune_epochs, patience=request.patience, seeds=request.seeds)


def prefetch(audit: AuditSession, name: str) -> None:
    """Train (or load) every poisoned model of `name` and run its detectors: the xdist prefetch."""
    if out_of_scope(audit, name) is None:
        train_poisoned_sets(audit, name)
        for cond in conditions(model_config(audit, name)):
            poisoned_models(audit, name, cond)
        detection(audit, name)
        scan_power(audit, name)
        trigger_scan(audit, name)
    published_detectors_scan(audit, name)


def _predicted_as(audit, models, x, labels) -> np.ndarray:
    """(seeds x inputs): does each seed's model predict `labels` (a tensor, or one class for all)?"""
    return predicted_as(audit, models, x, labels)


def label_flip(audit: AuditSession, name: str) -> dict:
    """Clean-test correctness of the clean model and of the model at every random flip rate."""
    def compute():
        data, rates = audit.data, model_config(audit, name).flip_rates
        poisoned = {r: _predicted_as(audit, poisoned_models(audit, name, Condition("flip", r)), data.x_test, data.y_test)
                    for r in rates}
        return {"rates": rates, "clean": clean_rows(audit, name, clean_correct(audit, name)), "poisoned": poisoned,
                "n_flipped": {r: int(poisoned_set(audit, Condition("flip", r)).mask.sum()) for r in rates}}
    return audit.memo(("label_flip", name), compute)


def targeted_unmeasurable(audit: AuditSession) -> str | None:
    """Why the targeted flip cannot be measured on this data (None when it can): the test split
    holds no input of targeted_pair's source class, so no input can show the flip."""
    source, target = _pair(audit)
    held = sorted({int(c) for c in audit.data.y_test.tolist()})
    if source in held:
        return None
    return (f"[tool.swiglu_audit.poisoning] targeted_pair = [{source}, {target}]: the test split holds no input of "
            f"the source class {source}, so nothing can show how many of its inputs the poisoned model sends to class "
            f"{target}; set targeted_pair to a source class the test split holds (classes {held})")


def targeted(audit: AuditSession, name: str) -> dict:
    """On source-class test inputs: is the prediction the target class? Clean model and each rate.
    A test split without the source class cannot measure it (`targeted_unmeasurable`)."""
    def compute():
        data, rates = audit.data, model_config(audit, name).targeted_rates
        source, target = _pair(audit)
        reason = targeted_unmeasurable(audit)
        if reason is not None:
            raise ValueError(reason)
        x_src = data.x_test[data.y_test == source]
        return {"source": source, "target": target, "rates": rates,
                "clean": clean_rows(audit, name, _predicted_as(audit, audit.zoo.models(name), x_src, target)),
                "poisoned": {r: _predicted_as(audit, poisoned_models(audit, name, Condition("targeted", r)), x_src, target)
                             for r in rates},
                "n_flipped": {r: int(poisoned_set(audit, Condition("targeted", r)).mask.sum()) for r in rates}}
    return audit.memo(("targeted", name), compute)


def backdoor_success(audit: AuditSession, name: str) -> dict:
    """Attack success on triggered test inputs of the other classes, and clean accuracy, per rate.
    The clean model's success on the same triggered inputs is the base rate."""
    def compute():
        data, cfg = audit.data, model_config(audit, name)
        target = _target(audit)
        triggered = add_trigger(data.x_test[data.y_test != target], cfg.trigger_size)
        attacks = [Condition("backdoor", r) for r in cfg.backdoor_rates]
        if cfg.clean_label:
            attacks.append(Condition("clean_label", max(cfg.backdoor_rates)))
        out = {"target": target, "rates": list(cfg.backdoor_rates), "asr": {}, "clean_accuracy": {},
               "n_poisoned": {},
               "base": clean_rows(audit, name, _predicted_as(audit, audit.zoo.models(name), triggered, target)),
               "clean": clean_rows(audit, name, clean_correct(audit, name))}
        for cond in attacks:
            models = poisoned_models(audit, name, cond)
            key = cond.rate if cond.attack == "backdoor" else "clean_label"
            out["asr"][key] = _predicted_as(audit, models, triggered, target)
            out["clean_accuracy"][key] = _predicted_as(audit, models, data.x_test, data.y_test)
            out["n_poisoned"][key] = int(poisoned_set(audit, cond).mask.sum())
        return out
    return audit.memo(("backdoor", name), compute)


def detection(audit: AuditSession, name: str) -> dict:
    """Both detectors on the training set of the backdoor at `detection_rate`, read through each
    seed's backdoored model; scored against the known poison. (At rates where the poison is as
    large as the target class itself, both published detectors fail by design.) Cached on disk."""
    cond = Condition("backdoor", audit.config.poisoning.detection_rate)

    def measure():
        poisoned = poisoned_set(audit, cond)
        truth = poisoned.mask.numpy()
        scores, metrics = {}, {}
        for m in poisoned_models(audit, name, cond):
            feats = penultimate_features(m.module, poisoned.x, audit.device).numpy()
            for det, output in run_detectors(feats, poisoned.y.numpy(), seed=m.seed or 0).items():
                scores.setdefault(det, []).append(output.scores)
                metrics.setdefault(det, []).append(detection_metrics(output, truth))
        arrays = {f"scores/{d}": np.stack(s) for d, s in scores.items()}
        return {**arrays, "truth": truth}, {"metrics": metrics}

    def compute():
        models = poisoned_models(audit, name, cond)
        arrays, record = audit.cached_arrays("poison-detection", models,
                                             {"condition": cond.tag(audit.config.poisoning)}, _CODE_DIGEST, measure)
        truth = arrays["truth"]
        return {"rate": cond.rate, "truth": truth, "n_poisoned": int(truth.sum()),
                "scores": {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("scores/")},
                "metrics": record["metrics"]}
    return audit.memo(("detection", name), compute)


def published_detectors_scan(audit: AuditSession, name: str) -> dict:
    """The published detectors (spectral signatures, activation clustering) on the audited training
    set itself, through the clean models: the samples both flag with every seed, as leads. Cached
    on disk."""
    def measure():
        data = audit.data
        votes, per_seed = np.zeros(len(data.y_train)), []
        models = audit.zoo.models(name)
        for m in models:
            feats = audit.train_features(m)
            out = run_detectors(feats, data.y_train.numpy(), seed=m.seed or 0)
            both = out["spectral"].flags & out["activation_clustering"].flags
            votes += both
            per_seed.append(int(both.sum()))
        suspicious = np.flatnonzero(votes == len(models))  # every seed's model agrees
        labels = data.y_train.numpy()
        return {}, {"indices": suspicious.tolist(), "labels": labels[suspicious].tolist(),
                    "per_class": {str(int(c)): int((labels[suspicious] == c).sum()) for c in np.unique(labels[suspicious])},
                    "flagged_per_seed": per_seed, "n_train": len(labels)}

    return audit.memo(("scan", name),
                      lambda: audit.cached_arrays("poison-scan", audit.zoo.models(name), {}, _CODE_DIGEST, measure)[1])


def scan_settings(audit: AuditSession, name: str) -> dict:
    """The trigger scan's settings for `name`: {"steps"} and, where it is poisoned the cheaper way,
    {"per_class"}: half the other-class inputs per class (the scan reads 2 x per_class of them) and
    at most CHEAPER_SCAN_STEPS steps. The same settings scan the audited set and the planted one,
    so the power that judges the scan is the power of the scan that ran."""
    steps = audit.config.poisoning.scan_steps
    if cheaper(audit, name):
        return {"steps": min(steps, CHEAPER_SCAN_STEPS), "per_class": CHEAPER_SCAN_PER_CLASS}
    return {"steps": steps}  # the scan's own per_class: the zoo's cache keys stay as they were


SCAN_INPUTS = backdoor_scan.inputs_per_step()  # inputs per class and step of the scan at its default settings
# Where unit costs are given rather than timed: a trigger-scan step costs about two input-gradient
# passes over its inputs (stamping, mask and pattern gradients, Adam): 115 ms against 54 ms for a
# small CNN on 32x32 images.
SCAN_STEP_PASSES = 2.0
SHORT_SCAN_STEPS = 50  # the trigger scan's steps in the budget's cheaper alternative
PROBE_SCAN_STEPS = 3  # steps of the plan's timed scan unit (its setup shared by them, as in a scan)


def _shares(audit: AuditSession, name: str) -> tuple[list[Part], Work]:
    """The poisoning job's work on one model, declared once: its parts, which run before the rest
    (the trainings: every poisoned set of the suite for every poisoned seed, retrained or
    fine-tuned from the clean checkpoint, and the first seed on each kind of the power panel that
    is not one of those sets, stacked across sets; then, side by side, one per such panel kind:
    the check that its model learned the backdoor, and its scan; where the model trains one by
    one, a part per set instead, and each panel kind's part trains its own model), and the rest
    (the detectors, which read the backdoored set's features per poisoned seed; the scan of the audited set; the
    checks and scans of panel kinds that are the suite's own sets). A scan passes its set's
    features forward, then per class runs its steps, counted over SCAN_INPUTS inputs each (a
    step's cost is about linear in its inputs; an upper bound: a kind the model did not learn is
    not scanned)."""
    config, data = audit.config, audit.data
    n_train, n_test = len(data.y_train), len(data.y_test)
    settings = scan_settings(audit, name)
    # the relabel census beside it: each class's group (at most one per class) through the model
    # over TRANSFER_INPUTS inputs as they are, added to, stamped, and stamped as the control; its
    # neighbour search is arithmetic on the inputs alone (about 0.1 s on digits, 16 s on a
    # CIFAR-sized set: BENCHMARKS.md), not counted
    census_examples = 4 * data.n_classes * relabel_census.TRANSFER_INPUTS
    one_scan = Work(forward_examples=n_train + census_examples,
                    units={"trigger scan": round(data.n_classes * settings["steps"] * scan_inputs(settings) / SCAN_INPUTS)})
    panel_check = Work(forward_examples=2 * n_test)  # its triggered test inputs through the poisoned and the clean model
    conds = conditions(model_config(audit, name))
    seeds = poisoned_seeds(audit, name)

    def trainings(cond: Condition, first_seed_only: bool) -> Trainings:
        fine = fine_tunes(audit, name, cond)
        return Trainings([poisoned_tag(audit, name, cond)], fine_tune_epochs(config) if fine else config.training.epochs,
                         seeds[:1] if first_seed_only else seeds, patience(audit, name, cond))

    def set_trainings(cond: Condition) -> Work:
        return Work(trainings={"poisoning fine-tuned" if fine_tunes(audit, name, cond) else "poisoning":
                               trainings(cond, False)})

    rest = [Work(forward_examples=len(seeds) * n_train), one_scan]
    tags = {poisoned_tag(audit, name, c) for c in conds}
    panel_kinds = []
    for cond in panel_conditions(config.poisoning):
        if poisoned_tag(audit, name, cond) in tags:  # one of the suite's sets: trained, and counted, once
            rest += [one_scan, panel_check]
        else:
            panel_kinds.append(cond)
    if audit.zoo.stacks(name):
        # every poisoned training first, as one part (they stack across sets: `train_poisoned_sets`),
        # then each panel kind's check and scan, side by side
        trained = [set_trainings(cond) for cond in conds]
        trained += [Work(trainings={"scan power panel": trainings(cond, True)}) for cond in panel_kinds]
        panel = [Part(f"panel-{cond.trigger}", total([one_scan, panel_check]),
                      lambda cond=cond: _kind_power(audit, name, cond), after=(TRAININGS_PART,))
                 for cond in panel_kinds]
        return [Part(TRAININGS_PART, total(trained), lambda: train_poisoned_sets(audit, name)), *panel], total(rest)
    # trained one by one: nothing is shared between sets, so each set's trainings are a part of
    # their own, and each panel kind trains its model within its own part, all side by side
    sets = [Part(f"{TRAININGS_PART}-{_set_label(cond)}", set_trainings(cond),
                 lambda cond=cond: poisoned_models(audit, name, cond)) for cond in conds]
    panel = [Part(f"panel-{cond.trigger}",
                  total([Work(trainings={"scan power panel": trainings(cond, True)}), one_scan, panel_check]),
                  lambda cond=cond: _kind_power(audit, name, cond)) for cond in panel_kinds]
    return [*sets, *panel], total(rest)


def _set_label(cond: Condition) -> str:
    """A poisoned set's short name among the suite's sets (which all carry the harness's trigger),
    for its part of the job: its rate as `Condition.tag` writes it, so two rates never share it."""
    return f"{cond.attack}-{cond.rate!r}"


def planned_work(audit: AuditSession, name: str) -> Work:
    """The poisoning job's declared work on one model: its parts and the rest together (`_shares`)."""
    if out_of_scope(audit, name) is not None or audit.zoo.spec(name).weights:
        return Work()
    parts, rest = _shares(audit, name)
    return total([*(p.work for p in parts), rest])


def planned_parts(audit: AuditSession, name: str) -> list[Part]:
    """The parts of the poisoning job that run side by side before the rest (`_shares`)."""
    if out_of_scope(audit, name) is not None or audit.zoo.spec(name).weights:
        return []
    return _shares(audit, name)[0]


def probe_units(audit: AuditSession, name: str, model) -> list[Unit]:
    """The trigger scan's step of one class over SCAN_INPUTS inputs, timed as the scan runs it:
    in eval mode, at one CPU thread, with as many classes optimised together as the scan puts in
    one pass, over PROBE_SCAN_STEPS steps. One step of one class alone, timed with its setup and
    its closing forward pass, overstated the scan about threefold on the digits MLPs (BENCHMARKS.md,
    sixteenth stop); over a few steps the setup's share still errs on the dear side. None for a
    model this suite does not poison (`planned_work`'s rule): it runs no scan."""
    from ..training.nn import eval_mode

    if out_of_scope(audit, name) is not None or audit.zoo.spec(name).weights:
        return []

    xs = audit.data.x_train[:SCAN_INPUTS].to(audit.device)
    n_classes = audit.data.n_classes
    group = min(n_classes, backdoor_scan.classes_per_group(model, [xs] * n_classes, audit.device))

    def scan_steps():
        with eval_mode(model):
            backdoor_scan.reverse_engineer_classes(model, [xs] * group, list(range(group)), audit.device,
                                                   steps=PROBE_SCAN_STEPS)

    return [Unit("trigger scan", scan_steps, SCAN_STEP_PASSES * SCAN_INPUTS / max(1, audit.config.adversarial.n_examples),
                 cpu_threads=1, per_run=group * PROBE_SCAN_STEPS)]


def budget_cuts(audit: AuditSession) -> list[tuple[str, dict]]:
    """Settings that make the suite cheaper: a shorter scan; a one-kind power panel; one family
    fewer retrained on poisoned data."""
    cfg = audit.config.poisoning
    poisoned = {audit.zoo.spec(n).scope_family for n in audit.zoo.specs if out_of_scope(audit, n) is None}
    if not poisoned:
        return []
    cuts = []
    if cfg.scan_steps > SHORT_SCAN_STEPS:
        cuts.append((f"[tool.swiglu_audit.poisoning] scan_steps = {SHORT_SCAN_STEPS} (a weaker trigger scan; its "
                     "measured power on the planted backdoor still decides whether \"nothing found\" passes)",
                     {"poisoning": {"scan_steps": SHORT_SCAN_STEPS}}))
    if len(cfg.threat_triggers) > 1:
        narrow = list(cfg.threat_triggers[:1])
        cuts.append((f"[tool.swiglu_audit.poisoning] threat_triggers = {narrow} (the scan's power measured on "
                     "one trigger kind: its \"nothing found\" then covers that kind alone)",
                     {"poisoning": {"threat_triggers": narrow}}))
    for dropped in [f for f in ("user", "vit", "mlp") if f in cfg.families and f in poisoned]:
        kept = [f for f in cfg.families if f != dropped]
        cuts.append((f"[tool.swiglu_audit.poisoning] families = {kept} (no retraining of the {dropped} models "
                     "on poisoned data)", {"poisoning": {"families": kept}}))
    return cuts


def scan_inputs(settings: dict) -> int:
    """Other-class inputs each class's optimisation reads per step under these settings."""
    return backdoor_scan.inputs_per_step(settings.get("per_class", backdoor_scan.PER_CLASS))


def _trigger_scan(audit: AuditSession, model, x, y, kind: str, settings: dict) -> dict:
    """The trigger-agnostic scan (methods/backdoor_scan.py) of one trained model over (x, y),
    cached on disk: {"flags", "scores", "mask", "pattern", "target", "anomaly_index", ...}.
    `settings` are the scan's (steps, per_class) and whatever else names the scanned set."""
    def measure():
        features = penultimate_features(model.module, x, audit.device).numpy()
        result = backdoor_scan.scan(model.module, x, y, audit.data.n_classes, audit.device, features=features,
                                    seed=model.seed or 0, steps=settings["steps"],
                                    per_class=settings.get("per_class", backdoor_scan.PER_CLASS))
        trigger = result.trigger
        # the trigger-free second test: relabelled samples sharing a perturbation the model obeys
        census = relabel_census.census(model.module, x, y, audit.data.n_classes, audit.device, seed=model.seed or 0)
        arrays = {"flags": result.flags, "scores": result.scores, "target_neighbours": result.target_neighbours,
                  "census_flags": census.flags,
                  **{f"evidence_{key}": values for key, values in result.evidence.items()}}
        if trigger is not None:
            arrays.update(mask=trigger.mask, pattern=trigger.pattern)
        return arrays, {"target": result.target, "anomaly_index": result.anomaly_index, "mask_l1": result.mask_l1,
                        "trigger_success": trigger.success if trigger else None, "class_cohesion": result.class_cohesion,
                        "separated_classes": {str(k): v for k, v in result.separated_classes.items()},
                        "census": census.summary()}

    arrays, record = audit.cached_arrays(kind, [model], settings, _CODE_DIGEST, measure)
    return {**arrays, **record, "flags": arrays["flags"].astype(bool), "census_flags": arrays["census_flags"].astype(bool)}


def trigger_scan(audit: AuditSession, name: str) -> dict:
    """The trigger-agnostic scan of the audited training set, through the first seed's model."""
    model = audit.zoo.models(name)[0]
    data = audit.data
    return audit.memo(("trigger-scan", name), lambda: _trigger_scan(
        audit, model, data.x_train, data.y_train, "trigger-scan", scan_settings(audit, name)))


def scan_power(audit: AuditSession, name: str) -> dict | None:
    """How well the same scan finds planted backdoors in this architecture: each threat trigger
    kind planted at the threat rate in the audited data ({"rate", "target", "kinds": {kind: ...}}),
    each kind's {"target_found", "precision", "recall", "hits", "n_poisoned", "n_flagged"} (hits of
    n_poisoned give the recall's confidence bound the verdict reads), or
    "not_learned" (the attack success above the base rate) where the model did not learn that
    backdoor, and no scan ran; None when the model is not poisoned in this audit."""
    if out_of_scope(audit, name) is not None:
        return None

    def compute():
        cfg = audit.config.poisoning
        kinds = {cond.trigger: _kind_power(audit, name, cond) for cond in panel_conditions(cfg)}
        return {"rate": cfg.threat_rate, "target": _target(audit), "kinds": kinds}
    return audit.memo(("scan-power", name), compute)


def panel_learned(audit: AuditSession, name: str, cond: Condition) -> float:
    """How far the first seed's model trained on `cond` learned its backdoor: its attack success on
    triggered test inputs of the other classes, above the clean model's (the base rate)."""
    data, target = audit.data, _target(audit)
    triggered = triggers.stamp(data.x_test[data.y_test != target], cond.trigger, audit.config.poisoning.trigger_size)
    poisoned = poisoned_models(audit, name, cond, first_seed_only=True)[:1]
    clean = audit.zoo.models(name)[:1]  # every seed's clean model is trained anyway
    return float(_predicted_as(audit, poisoned, triggered, target).mean()
                 - _predicted_as(audit, clean, triggered, target).mean())


def _kind_power(audit: AuditSession, name: str, cond: Condition) -> dict:
    poisoned = poisoned_set(audit, cond)
    truth = poisoned.mask.numpy()
    learned = panel_learned(audit, name, cond)
    if learned < MIN_LEARNED_BACKDOOR:  # nothing to find: its power is nil, and not worth a scan
        return {"target_found": False, "found_target": None, "n_poisoned": int(truth.sum()), "hits": 0, "n_flagged": 0,
                "precision": None, "recall": 0.0, "not_learned": round(learned, 3)}
    model = poisoned_models(audit, name, cond, first_seed_only=True)[0]
    result = _trigger_scan(audit, model, poisoned.x, poisoned.y, "trigger-scan-planted",
                           {**scan_settings(audit, name), "condition": cond.tag(audit.config.poisoning)})
    min_group = smallest_failing_group(audit.config.poisoning.threat_rate, len(truth),
                                       audit.config.policy["min_scan_recall"])
    return {**planted_found(result, truth, _target(audit), min_group), "learned": round(learned, 3)}


def scan_facts(found: dict, threat_rate: float, min_scan_recall: float) -> dict:
    """What the scan's decision table (checks/poison_detection.py) reads of one scan of a training
    set, `found` as `trigger_scan` gives it (the trigger scan and the relabel census): built here
    once, for the suite and for the benchmark that judges held-out cases as the suite does. The
    scan's power on planted backdoors is the caller's to add ("power")."""
    flagged = np.flatnonzero(found["flags"])
    target = found["target"]
    samples = sample_facts(list(found["target_neighbours"][flagged]), found.get("class_cohesion"),
                           int(found["evidence_carries"][flagged].sum()))
    return {"target": target, "n_flagged": len(flagged), "share": len(flagged) / len(found["flags"]),
            # the suspected target's own anomaly index (the largest among classes whose trigger works)
            "anomaly_index": found["anomaly_index"][target] if target is not None else max(found["anomaly_index"]),
            # the class that index is of, where the scan named none (the verdict names it)
            "anomalous_class": target if target is not None else int(np.argmax(found["anomaly_index"])),
            **samples, "class_cohesion": found.get("class_cohesion"),
            "census": census_facts(found.get("census"), int(found["census_flags"].sum())),
            "mask_l1": found["mask_l1"][target] if target is not None else None,
            "trigger_success": found["trigger_success"], "min_learned_backdoor": MIN_LEARNED_BACKDOOR,
            "min_fail_group": smallest_failing_group(threat_rate, len(found["flags"]), min_scan_recall)}


def listed_samples(result: dict) -> np.ndarray:
    """(N,) bool: the samples a finding on a scan result (`_trigger_scan`'s) lists. Where the
    relabel census names a class its group, with the trigger scan's flags when that scan names
    the same class (the census is judged first: checks.poison_detection.SCAN); else the trigger
    scan's flags, and the census's lead group where it has one."""
    census = result["census"]
    if census["target"] is None:  # the census's lead group, if any, is listed beside the trigger scan's flags
        return result["flags"] | result["census_flags"] if census.get("lead") is not None else result["flags"]
    if result["target"] == census["target"]:
        return result["flags"] | result["census_flags"]
    return result["census_flags"]


def planted_found(result: dict, truth: np.ndarray, target: int, min_fail_group: int = 3) -> dict:
    """How a scan result (`_trigger_scan`'s) finds planted poison (`truth`, labelled `target`).
    The poison counts as found only where the decision's first FAIL names its class: the relabel
    census's when it names one (it is judged first), else the trigger scan's relabelled group.
    Flags the verdict would set aside as the class's own feature are no power. Precision and recall
    are over the samples a finding lists (`listed_samples`)."""
    samples = sample_facts(list(result["target_neighbours"][result["flags"]]), result.get("class_cohesion"),
                           int(result["evidence_carries"][result["flags"]].sum()))
    by_trigger = relabelled_group({"target": result["target"], "n_flagged": int(result["flags"].sum()),
                                   "min_fail_group": min_fail_group, **samples})
    census_named = result["census"]["target"]
    named = census_named if census_named is not None else result["target"]
    decided = named == target and (census_named is not None or by_trigger)
    flags = listed_samples(result)
    hits = int((flags & truth).sum())
    return {"target_found": named == target, "found_target": named,
            "n_poisoned": int(truth.sum()), "hits": hits, "n_flagged": int(flags.sum()),
            "precision": hits / int(flags.sum()) if flags.any() else None,
            "recall": hits / int(truth.sum()) if truth.any() else None, "decided": decided,
            "found_by": ("relabel census" if census_named is not None else "trigger scan") if decided else None,
            "likeness": samples["likeness"]}


def integrity(audit: AuditSession) -> dict:
    """Model-free checks of the dataset: leakage and duplicates (label errors are `label_errors`'s).
    Kept in the cache, keyed by the data's content and these settings: on a large set the shifted
    copies' lookup is seconds to minutes of work, and a warm audit re-judges rather than searches."""
    cfg = audit.config.poisoning
    settings = {"near_duplicate_rms": cfg.near_duplicate_rms, "near_duplicate_ratio": cfg.near_duplicate_ratio,
                "shift_search_tflop": cfg.shift_search_tflop}

    def compute():
        data, cfg = audit.data, audit.config.poisoning

        # the training split prepared once for the invariant rule, queried by test, val and itself;
        # the validation split's own index reads distances in the training split's unit
        budget = cfg.shift_search_tflop * 1e12
        train_index = NearDuplicateIndex(data.x_train, shift_budget=budget)
        val_index = NearDuplicateIndex(data.x_val, reference=data.x_train, unit=train_index.unit,
                                       window_unit_from=train_index, shift_budget=budget)

        def near(a, b, index):
            """Near duplicates by either rule: the raw pixel difference, or up to what pipelines do
            (brightness, contrast, 1-pixel shifts, mirroring, re-encoding noise; shifts of up to 4
            pixels on images of 8 pixels and more); the ratio shown is the invariant rule's (0 where
            only the raw rule paired them)."""
            raw = {(i, j): 0.0 for i, j, _ in near_duplicates(a, b, cfg.near_duplicate_rms)}
            invariant = {(i, j): r for i, j, r in index.pairs(b, cfg.near_duplicate_ratio)}
            return sorted(((i, j, invariant.get((i, j), raw.get((i, j), 0.0))) for i, j in raw.keys() | invariant.keys()),
                          key=lambda t: (t[1], t[0]))
        leaks = {split: {"exact": exact_duplicates(data.x_train, x), "near": near(data.x_train, x, train_index)}
                 for split, x in (("test", data.x_test), ("val", data.x_val))}
        # a test sample that copies a validation sample leaks too (model selection saw it)
        test_in_val = {"exact": exact_duplicates(data.x_val, data.x_test),
                       "near": near(data.x_val, data.x_test, val_index)}
        # what the central-window lookups of shifted copies covered (None: images under 8 pixels,
        # or tabular rows)
        searches = {"test": train_index.shift_search(len(data.x_test)), "val": train_index.shift_search(len(data.x_val)),
                    "test_in_val": val_index.shift_search(len(data.x_test))}
        within_near = near(data.x_train, None, train_index)
        y = data.y_train
        conflicting = [(i, j) for i, j, _ in within_near if int(y[i]) != int(y[j])]
        # copies within the test split: every interval counts them as independent inputs; the
        # other indexes' searches are let go first (only the training split's unit is read)
        unit = train_index.unit
        del train_index, val_index
        test_index = NearDuplicateIndex(data.x_test, reference=data.x_train, unit=unit)
        return {"leaks": leaks, "test_in_val": test_in_val, "n_test": len(data.y_test), "n_val": len(data.y_val),
                "shift_search": {k: v.to_dict() for k, v in searches.items() if v is not None},
                "n_train": len(y), "within_exact": exact_duplicates(data.x_train),
                "within_near": within_near, "conflicting_labels": conflicting,
                "test_within_exact": exact_duplicates(data.x_test),
                "test_within_near": near(data.x_test, None, test_index)}
    return audit.memo(("integrity",), lambda: _data_measurement(audit, "data-integrity", settings, compute))


def label_errors(audit: AuditSession) -> dict:
    """Likely label errors in the training split (`methods.integrity.label_issues`), once per
    process: apart from `integrity`, so that a failure of the cross-validated model cannot turn the
    leakage and duplicate findings into errors too."""
    data = audit.data
    return audit.memo(("label-errors",), lambda: _data_measurement(
        audit, "label-errors", {}, lambda: {**label_issues(data.x_train, data.y_train, data.n_classes),
                                            "n_train": len(data.y_train)}))


def _data_measurement(audit: AuditSession, kind: str, settings: dict, compute) -> dict:
    """A measurement of the data alone (no model), kept in the cache under the data's content hash
    (`cached_arrays` keys by it), these settings, the code that computes it and the versions of the
    libraries it runs on; pairs come back as lists, as a load from the cache returns them. A cache
    that cannot keep it (a folder that cannot be written, a lock held too long, a store out of
    reach) costs the measurement's time, never the finding: before it was cached it needed none."""
    from ..errors import CacheError

    def measured() -> dict:
        return json_safe(compute())
    try:
        return audit.cached_record(kind, [], {**settings, "libraries": _library_versions()}, _DATA_DIGEST, measured)
    except (CacheError, OSError):
        return measured()


def _library_versions() -> dict[str, str | None]:
    """Versions of the libraries the data checks compute with, read without importing them."""
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    return {name: version(name) for name in ("scikit-learn", "numpy", "scipy")}


def _pair(audit: AuditSession) -> tuple[int, int]:
    source, target = audit.config.poisoning.targeted_pair
    _check_class(audit, source, "targeted_pair")
    _check_class(audit, target, "targeted_pair")
    return source, target


def _target(audit: AuditSession) -> int:
    target = audit.config.poisoning.backdoor_target
    _check_class(audit, target, "backdoor_target")
    return target


def _check_class(audit: AuditSession, c: int, key: str) -> None:
    from ..errors import ConfigError

    if not 0 <= c < audit.data.n_classes:
        raise ConfigError(f"[tool.swiglu_audit.poisoning] {key}: class {c} does not exist; the "
                          f"dataset has classes 0 to {audit.data.n_classes - 1}")


_CODE_DIGEST = code_digest(sys.modules[__name__], poison_detectors, backdoor_scan, relabel_census, features_module)
_ATTACK_DIGEST = code_digest(poisoning)
# this module too: `integrity` decides which splits are compared and how the two rules' pairs merge
_DATA_DIGEST = code_digest(sys.modules[__name__], integrity_methods, shifted_copies, image_rows)
_TRIGGER_DIGEST = code_digest(triggers)
