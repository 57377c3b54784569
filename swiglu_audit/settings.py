"""The typed settings sections, and the shipped defaults they are read from.

Each section of `[tool.swiglu_audit]` (training, adversarial, poisoning, ood, numerical,
statistics, fairness, privacy) is a frozen dataclass. Its fields are the schema: a user's table is merged over the
profile's values from `settings.toml`, every key is checked against the fields (a typo is a usage
error naming the known keys), every value against the field's type, and each section's `check`
adds the rules that tie its values together. Lists become tuples, so a section cannot be changed
after the start; `to_dict` gives the JSON form the report echoes and the cache keys hash.
Torch-free: the plugin imports this at pytest start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from .errors import ConfigError

TOOL_TABLE = "tool.swiglu_audit"
PROFILES = ("quick", "standard", "full")
BUILTIN_FAMILIES = ("mlp", "vit")
# How a model is trained on a poisoned set: retrained from scratch, or its clean checkpoint
# fine-tuned for fine_tune_share of the epochs; "auto": users' models fine-tune, the zoo retrains.
# "cheaper" was first called "fine_tune", a name that said less than the mode does (it also cuts
# rates, seeds and the scan); the old name is still accepted
POISONING_MODES = ("auto", "retrain", "cheaper", "fine_tune")
# The trigger kinds the scan's power can be measured on (`methods.triggers` draws them), with the
# words a verdict uses for each
TRIGGER_KINDS = {
    "corner_patch": "a full-intensity patch in the bottom-right corner (the harness's own trigger)",
    "top_left_patch": "the same patch in the top-left corner",
    "edge_patch": "a larger patch on the middle of the left edge",
    "centre_patch": "a patch in the centre of the input",
    "checkerboard": "a 3x3 checkerboard in the top-right corner",
    "blend": "20% of a noise image blended over the whole input",
    "sparse": "two single pixels at full intensity, far apart",
}
# Seeds reach numpy's and scikit-learn's seeding (KMeans, check_random_state), which take 0 to 2**32 - 1
SEED_LIMIT = 2**32
# Fewer bootstrap replicates give an interval that is mostly noise
MIN_BOOTSTRAP = 100


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_seed(value: Any) -> bool:
    """A seed every random generator of the audit takes: an integer (not true/false) in [0, 2**32)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT


def check_counts(section: Section, why: dict[str, str]) -> None:
    """Counts that must be at least 1; `why` says, per key, what a 0 would silently do."""
    for key, consequence in why.items():
        value = getattr(section, key)
        default = _shipped()["base"][section.name][key]
        expect(value >= 1, f"[{TOOL_TABLE}.{section.name}] {key} = {value} must be at least 1 ({consequence}); "
                           f"the default is {default}")


class Section:
    """What every settings section shares: building from a merged table, and its JSON form."""

    name: ClassVar[str]

    @classmethod
    def from_table(cls, values: dict[str, Any]) -> Any:
        where = f"[{TOOL_TABLE}.{cls.name}]"
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        reject_unknown(values, known, where)
        hints = typing.get_type_hints(cls)
        section = cls(**{key: _coerce_field(values[key], hints[key], f"{cls.name}.{key}", where) for key in known})
        section.check()
        return section

    def check(self) -> None:
        """Rules between values; each section adds its own."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainingSettings(Section):
    name: ClassVar[str] = "training"
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float

    def check(self) -> None:
        expect(self.epochs >= 1, f"[{TOOL_TABLE}.training] epochs must be >= 1")
        expect(self.batch_size >= 1, f"[{TOOL_TABLE}.training] batch_size must be >= 1")
        expect(self.learning_rate > 0, f"[{TOOL_TABLE}.training] learning_rate = {self.learning_rate} must be positive "
                                       "(at 0 every model stays at its initialisation)")


@dataclass(frozen=True)
class AdversarialSettings(Section):
    name: ClassVar[str] = "adversarial"
    eps: float  # Linf budget
    eps_l2: float  # L2 budget
    steps: int  # PGD iterations
    n_examples: int  # test inputs attacked
    budgets: tuple[float, ...]  # the Linf budget curve
    large_eps: float  # the budget at which accuracy must reach chance (a sanity check)
    attacks: tuple[str, ...]  # names in the attack registry (checked at start-up)
    square_queries: int
    cw_steps: int
    apgd_steps: int
    pgd_step_factor: float  # PGD's step = pgd_step_factor * eps / steps
    cw_c: float  # CW-L2's trade-off between distance and misclassification
    cw_learning_rate: float

    def check(self) -> None:
        expect(all(b > 0 for b in self.budgets), f"[{TOOL_TABLE}.adversarial] budgets must be positive")
        expect(self.eps > 0, f"[{TOOL_TABLE}.adversarial] eps must be positive")
        expect(self.large_eps > self.eps, f"[{TOOL_TABLE}.adversarial] large_eps = {self.large_eps} must exceed eps = "
                                          f"{self.eps} (the sanity check asks for chance accuracy at a budget far "
                                          "beyond the audited one)")
        expect(self.eps_l2 > 0, f"[{TOOL_TABLE}.adversarial] eps_l2 must be positive (an L2 attack with no budget "
                                "does not attack); the default is 0.5")
        expect(self.pgd_step_factor > 0 and self.cw_c > 0 and self.cw_learning_rate > 0,
               f"[{TOOL_TABLE}.adversarial] pgd_step_factor, cw_c and cw_learning_rate must be positive")
        # an attack given no iterations or queries returns its inputs unchanged: robust accuracy
        # would read as clean accuracy, overstating robustness
        check_counts(self, {"steps": "PGD without iterations does not attack",
                            "n_examples": "the attacks need test inputs",
                            "square_queries": "Square without queries does not attack",
                            "cw_steps": "CW-L2 without steps does not attack",
                            "apgd_steps": "APGD without iterations does not attack"})


@dataclass(frozen=True)
class PoisoningSettings(Section):
    name: ClassVar[str] = "poisoning"
    families: tuple[str, ...]  # model families poisoned ("user": the user's own models)
    flip_rates: tuple[float, ...]
    targeted_pair: tuple[int, ...]  # [source, target]
    targeted_rates: tuple[float, ...]
    backdoor_target: int
    backdoor_rates: tuple[float, ...]
    detection_rate: float  # the backdoor rate whose model the poison detectors read
    trigger_size: int  # pixels (or features) of the harness's trigger
    clean_label: bool
    near_duplicate_rms: float  # raw RMS pixel difference of a near duplicate
    near_duplicate_ratio: float  # up to brightness, contrast, shifts, noise: distance over the typical nearest neighbour's
    shift_search_tflop: float  # budget of each central-window lookup of shifted copies (methods/shifted_copies.py)
    scan_steps: int  # optimisation steps per class of the trigger scan
    # the threat the scan's "nothing found" must cover: the smallest poison rate, and the trigger
    # kinds (TRIGGER_KINDS) its power is measured on
    threat_rate: float
    threat_triggers: tuple[str, ...]
    mode: str  # one of POISONING_MODES
    fine_tune_share: float
    early_stopping_patience: int
    cheaper_seeds: int

    def __post_init__(self) -> None:
        for key in ("flip_rates", "targeted_rates", "backdoor_rates"):  # rates are a set, in order
            object.__setattr__(self, key, tuple(sorted(set(getattr(self, key)))))
        object.__setattr__(self, "threat_triggers", tuple(dict.fromkeys(self.threat_triggers)))  # in the user's order

    def check(self) -> None:
        where = f"[{TOOL_TABLE}.poisoning]"
        for family in self.families:
            check_choice(family, BUILTIN_FAMILIES + ("user",), "family", f"{where} families")
        for key in ("flip_rates", "targeted_rates", "backdoor_rates"):
            expect(all(0.0 < r < 1.0 for r in getattr(self, key)), f"{where} {key} must lie in (0, 1)")
        pair = self.targeted_pair
        expect(len(pair) == 2 and pair[0] != pair[1] and min(pair) >= 0,
               f"{where} targeted_pair must be two different class indices [source, target]")
        expect(self.detection_rate in self.backdoor_rates,
               f"{where} detection_rate = {self.detection_rate} must be one of backdoor_rates "
               f"{list(self.backdoor_rates)} (the detectors read the model trained at that rate)")
        expect(self.trigger_size >= 1, f"{where} trigger_size must be at least 1 pixel")
        # at 0 the leakage check counts exact copies only: a test input leaked with any change passes
        expect(self.near_duplicate_rms > 0 and self.near_duplicate_ratio > 0,
               f"{where} near_duplicate_rms = {self.near_duplicate_rms} and near_duplicate_ratio = "
               f"{self.near_duplicate_ratio} must be positive: at 0 only exact copies count as duplicates, and a "
               "test input leaked with any change would pass the leakage check; the defaults are 0.03 and 0.35")
        expect(self.shift_search_tflop >= 0,
               f"{where} shift_search_tflop = {self.shift_search_tflop} must be at least 0 (TFLOP a lookup of "
               "shifted copies may take; 0 never looks, and the leakage check is then at best a WARN)")
        # a scan that never optimises finds no trigger, and its "nothing found" would PASS
        check_counts(self, {"scan_steps": "a trigger scan without steps finds nothing and would report nothing found"})
        expect(0.0 < self.threat_rate < 0.5,
               f"{where} threat_rate = {self.threat_rate} must lie in (0, 0.5): the smallest share of the training "
               "set an attacker's poison takes that the scan's 'nothing found' must cover")
        for kind in self.threat_triggers:
            check_choice(kind, tuple(TRIGGER_KINDS), "trigger kind", f"{where} threat_triggers")
        check_choice(self.mode, POISONING_MODES, "mode", f"{where} mode")
        expect(0.0 < self.fine_tune_share <= 1.0,
               f"{where} fine_tune_share must lie in (0, 1]: the share of the clean training's epochs that "
               "fine-tuning on a poisoned set takes")
        expect(self.early_stopping_patience >= 0,
               f"{where} early_stopping_patience must be a whole number of epochs >= 0 (0: no early stopping "
               "of the fine-tuned poisoned trainings)")
        # one seed would judge the poisoned models' floors on the test examples alone (the one-seed
        # cap in record_finding reads the audit's seeds, not these)
        expect(self.cheaper_seeds == 0 or self.cheaper_seeds >= 2,
               f"{where} cheaper_seeds = {self.cheaper_seeds} must be 0 (every seed) or at least 2: how many of the "
               "seeds a model poisoned the cheaper way is trained for on poisoned data; one seed's interval covers "
               "the test examples only, not the training's randomness")


@dataclass(frozen=True)
class OodSettings(Section):
    name: ClassVar[str] = "ood"
    n_examples: int
    bootstrap: int  # replicates of the OOD metrics' intervals
    knn_k: int
    odin_temperature: float
    odin_eps: float
    corruptions: tuple[str, ...]  # names in the corruption registry (checked at start-up)
    ece_bins: int

    def check(self) -> None:
        expect(self.knn_k >= 1 and self.ece_bins >= 1 and self.odin_temperature > 0,
               f"[{TOOL_TABLE}.ood] knn_k, ece_bins and odin_temperature must be positive")
        expect(self.odin_eps > 0, f"[{TOOL_TABLE}.ood] odin_eps = {self.odin_eps} must be positive: at 0 ODIN is "
                                  "the temperature-scaled softmax alone, reported under ODIN's name; the default is 0.002")
        check_counts(self, {"n_examples": "the OOD suite needs test inputs to score"})
        expect(self.bootstrap >= MIN_BOOTSTRAP,
               f"[{TOOL_TABLE}.ood] bootstrap = {self.bootstrap} must be at least {MIN_BOOTSTRAP} replicates (an "
               "interval from fewer is mostly noise), as statistics.bootstrap; the default is 1000")


@dataclass(frozen=True)
class NumericalSettings(Section):
    name: ClassVar[str] = "numerical"
    n_examples: int
    op_examples: int  # hypothesis examples per op property
    compile: bool  # also test the op under torch.compile
    golden_probe: int
    golden_dir: str
    determinism_epochs: int
    implementations: dict[str, str]  # name -> "package.module:callable" of a SwiGLU op

    def check(self) -> None:
        for impl, path in self.implementations.items():
            check_import_path(path, f"[{TOOL_TABLE}.numerical.implementations] {impl}")
        expect(bool(self.golden_dir.strip()), f"[{TOOL_TABLE}.numerical] golden_dir must name a folder, e.g. "
                                              "golden_dir = \"golden\" (\"\" would put the golden files in the project root)")
        check_counts(self, {"n_examples": "the parity and deployment checks need test inputs",
                            "op_examples": "hypothesis needs at least one example per op property",
                            "golden_probe": "a golden file needs inputs to record",
                            "determinism_epochs": "two trainings of no epochs compare untrained weights"})


@dataclass(frozen=True)
class StatisticsSettings(Section):
    name: ClassVar[str] = "statistics"
    # Means over examples get analytic t-intervals (stats.py); these two set the example resamples
    # of metrics that are not means over examples outside the OOD tables (which have ood.bootstrap):
    # the poison detectors' AUROC, the ECE under shift
    bootstrap: int
    seed: int  # the resampling's seed
    max_seeds: int  # with seeds = "auto": the most seeds per architecture a comparison may get

    def check(self) -> None:
        expect(self.bootstrap >= MIN_BOOTSTRAP, f"[{TOOL_TABLE}.statistics] bootstrap must be at least {MIN_BOOTSTRAP} "
                                                "replicates (an interval from fewer is mostly noise); the default is 1000")
        expect(is_seed(self.seed), f"[{TOOL_TABLE}.statistics] seed = {self.seed} must be an integer from 0 to "
                                   f"{SEED_LIMIT - 1} (what numpy's seeding takes); the default is 0")
        expect(2 <= self.max_seeds <= 50, f"[{TOOL_TABLE}.statistics] max_seeds must be between 2 and 50 "
                                          "(seeds per architecture that seeds = \"auto\" may train); the default is 8")


@dataclass(frozen=True)
class FairnessSettings(Section):
    name: ClassVar[str] = "fairness"
    # (N, D) data: the feature whose values name the groups the fairness suite compares (a category,
    # or below and at or above its median); -1: none (groups_test in the dataset names them instead)
    group_feature: int

    def check(self) -> None:
        expect(self.group_feature >= -1, f"[{TOOL_TABLE}.fairness] group_feature must be a feature index (0, 1, ...) "
                                         "or -1 for none")


@dataclass(frozen=True)
class PrivacySettings(Section):
    name: ClassVar[str] = "privacy"
    families: tuple[str, ...]  # model families attacked ("user": the user's own models)
    # reference models per attacked model, each trained on a random half of all the audit's records
    # (RMIA); pairs take complementary halves, so every record is in half of them
    reference_models: int

    def check(self) -> None:
        where = f"[{TOOL_TABLE}.privacy]"
        for family in self.families:
            check_choice(family, BUILTIN_FAMILIES + ("user",), "family", f"{where} families")
        expect(self.reference_models >= 2 and self.reference_models % 2 == 0,
               f"{where} reference_models must be an even number >= 2 (pairs of reference models train on "
               "complementary halves of the records)")


SECTIONS: tuple[type[Section], ...] = (TrainingSettings, AdversarialSettings, PoisoningSettings, OodSettings,
                                       NumericalSettings, StatisticsSettings, FairnessSettings, PrivacySettings)
SECTION_NAMES = tuple(s.name for s in SECTIONS)


@cache
def _shipped() -> dict[str, Any]:
    return tomllib.loads(resources.files("swiglu_audit").joinpath("settings.toml").read_text())


def default_policy() -> dict[str, Any]:
    return dict(_shipped()["policy"])


@dataclass(frozen=True)
class Range:
    """Where a policy value means something, read from how its check uses it (checks/)."""

    low: float
    high: float  # math.inf: no upper end
    what: str  # what the value is, for the message
    open_ends: tuple[str, ...] = ()  # "low", "high": that end excluded

    def holds(self, value: float) -> bool:
        above = value > self.low if "low" in self.open_ends else value >= self.low
        below = value < self.high if "high" in self.open_ends else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'above' if 'low' in self.open_ends else 'at least'} {self.low:g}"
        left, right = "(" if "low" in self.open_ends else "[", ")" if "high" in self.open_ends else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


# Accuracies, shares, rates, AUROCs and AURCs lie in [0, 1], and so do a limit on one and a
# tolerance on a difference of two: a limit outside [0, 1] is crossed always or never
_SHARE = Range(0.0, 1.0, "a share, rate, accuracy or AUROC, or a tolerance on a difference of two")
_TOLERANCE = Range(0.0, math.inf, "a tolerance in the measured value's own units")
# largest over median |activation| is at least 1, and float16 headroom below 1 is an overflow
_RATIO = Range(1.0, math.inf, "a ratio of a largest value to a smaller one")
_LEVEL = Range(0.0, 1.0, "a probability", ("low", "high"))
POLICY_RANGES: dict[str, Range] = {
    "alpha": _LEVEL, "confidence_level": _LEVEL,
    **dict.fromkeys((
        "max_robust_accuracy_drop", "warn_below_robust_accuracy", "masking_tolerance", "chance_margin",
        "black_box_margin", "max_zero_gradient_share", "max_label_flip_accuracy_drop", "max_label_flip_drop_excess",
        "max_targeted_flip_success", "max_backdoor_success", "max_backdoor_success_excess",
        "min_poison_detection_auroc", "max_detection_auroc_drop", "max_backdoor_base_rate", "min_scan_recall",
        "max_leakage_share", "max_duplicate_share", "max_label_error_share", "warn_below_ood_auroc",
        "warn_below_near_ood_auroc", "max_ood_auroc_drop", "max_aurc", "max_corruption_accuracy_drop",
        "max_corruption_accuracy_gap", "max_live_accuracy_drop", "max_drift_degradation_gap", "max_ece_under_shift",
        "max_subpopulation_accuracy_drop", "max_fp16_flip_rate", "max_bf16_flip_rate", "max_device_flip_rate",
        "max_int8_accuracy_drop", "max_fp8_accuracy_drop", "max_quantised_drop_gap", "max_class_accuracy_gap",
        "max_robust_class_gap", "max_corrupted_class_gap", "max_equalized_odds_difference",
        "max_worst_class_accuracy_gap", "max_worst_group_accuracy_gap", "max_parity_gap_increase",
        "max_mia_tpr_at_1pct_fpr", "max_mia_tpr_gap", "max_clean_accuracy_drop",
        "max_param_mismatch",  # relative to the larger count: below 1
        "efficiency_target_accuracy",  # 0: chosen automatically
    ), _SHARE),
    # weight and logit differences, a log10 ratio gap, a relative cost, an anomaly index: unbounded
    **dict.fromkeys(("max_nondeterminism", "max_nondeterminism_accelerator", "max_device_logit_deviation",
                     "golden_tolerance_float32", "golden_tolerance_bfloat16", "max_outlier_log_ratio_gap",
                     "max_efficiency_loss", "min_trigger_anomaly_index"), _TOLERANCE),
    "min_fp16_headroom": _RATIO, "max_ffn_outlier_ratio": _RATIO,
    # a share of FLOPs saved: saving all of them is impossible
    "min_efficiency_gain": Range(0.0, 1.0, "a share of the baseline's FLOPs saved (0: not required)", ("high",)),
}


def check_policy(policy: dict[str, Any]) -> None:
    """Every number of the policy (defaults and the user's) within its range."""
    for key, value in policy.items():
        if key in POLICY_RANGES:
            allowed = POLICY_RANGES[key]
            expect(allowed.holds(value), f"[{TOOL_TABLE}.policy] {key} = {value} must be {allowed} ({allowed.what}); "
                                         f"the default is {_shipped()['policy'][key]}")


def profile_defaults(profile: str) -> dict[str, Any]:
    """The profile's values: the base with the profile's overrides, one level of tables deep."""
    shipped = _shipped()
    merged = copy.deepcopy(shipped["base"])
    for key, value in shipped[profile].items():
        if isinstance(value, dict) and key in merged:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_sections(defaults: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """Each section from the profile's values with the user's table merged over them."""
    sections: dict[str, Any] = {}
    for cls in SECTIONS:
        user = table.get(cls.name, {})
        expect(isinstance(user, dict), f"[{TOOL_TABLE}.{cls.name}] must be a table")
        sections[cls.name] = cls.from_table({**defaults[cls.name], **user})
    return sections


def _coerce_field(value: Any, hint: Any, key: str, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:  # tuple[X, ...]: a non-empty list in TOML
        expect(isinstance(value, (list, tuple)) and len(value) > 0, f"{where} {key.split('.')[-1]} must be a non-empty list")
        return tuple(coerce(v, args[0], key) for v in value)
    if origin is dict:  # a table of name = "string"
        expect(isinstance(value, dict), f"[{TOOL_TABLE}.{key}] must be a table")
        return {str(k): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    value = coerce(value, hint, key)
    if hint in (int, float) and key not in SIGNED_FIELDS:
        expect(value >= 0, f"{where} {key.split('.')[-1]} must not be negative")
    return value


# numbers whose negative values mean something (the section's own check says what)
SIGNED_FIELDS = frozenset({"fairness.group_feature"})


def coerce(value: Any, kind: type, key: str) -> Any:
    if kind is str:
        expect(isinstance(value, str), f"[{TOOL_TABLE}] {key} must hold strings, got {value!r}")
        return value
    if kind is bool:
        expect(isinstance(value, bool), f"[{TOOL_TABLE}] {key} must be true or false")
        return value
    if kind is int:
        expect(isinstance(value, int) and not isinstance(value, bool),
               f"[{TOOL_TABLE}] {key} must be an integer, got {value!r}")
        return value
    expect(isinstance(value, (int, float)) and not isinstance(value, bool),
           f"[{TOOL_TABLE}] {key} must be a number, got {value!r}")
    # nan and inf compare false (or true) against every limit, and the report's JSON cannot hold them
    expect(math.isfinite(value), f"[{TOOL_TABLE}] {key} = {value!r} is not a finite number; write a finite "
                                 "value (nan and inf are not settings)")
    return float(value)


def check_choice(value: Any, allowed: tuple[str, ...], what: str, option: str) -> None:
    expect(value in allowed, f"{option}: unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def check_import_path(value: Any, where: str) -> None:
    ok = isinstance(value, str) and value.count(":") == 1 and all(value.split(":"))
    expect(ok, f"{where} = {value!r} is not an import path; write it as \"package.module:callable\"")


def reject_unknown(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    expect(not unknown, f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(sorted(known))}")


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
