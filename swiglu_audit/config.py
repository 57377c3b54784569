"""One frozen `AuditConfig`, built from a profile, `[tool.swiglu_audit]` and the command line.

Precedence, lowest first: the profile's defaults, the user's `[tool.swiglu_audit]` table, then the
command line. Every key is checked here, so a typo fails at start-up with the key's name and the
list of keys we know, instead of being silently ignored. No torch import here: the plugin imports
this module at pytest start-up.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

# Command-line option names. Tests import these rather than spelling the strings again.
OPT_ENABLE = "--swiglu-audit"
OPT_PROFILE = "--swiglu-audit-profile"
OPT_DEVICE = "--swiglu-audit-device"
OPT_REPORT_DIR = "--swiglu-audit-report-dir"
OPT_CACHE_DIR = "--swiglu-audit-cache-dir"
OPT_SEEDS = "--swiglu-audit-seeds"
OPT_UPDATE_GOLDEN = "--swiglu-audit-update-golden"
OPT_DEBUG = "--swiglu-audit-debug"
OPT_SAVE = "--swiglu-audit-save"
OPT_COMPARE = "--swiglu-audit-compare"
OPT_SHARD = "--swiglu-audit-shard"
OPT_PLAN = "--swiglu-audit-plan"
OPT_MAX_MINUTES = "--swiglu-audit-max-minutes"
OPT_ACCEPT_REDUCED = "--swiglu-audit-accept-reduced-plan"
DEFAULT_HISTORY_DIR = ".swiglu-audit-history"
# How a model is trained on a poisoned set: retrained from scratch, or its clean checkpoint
# fine-tuned for fine_tune_share of the epochs; "auto": users' models fine-tune, the zoo retrains.
POISONING_MODES = ("auto", "retrain", "fine_tune")

TOOL_TABLE = "tool.swiglu_audit"
PROFILES = ("quick", "standard", "full")
DEVICES = ("auto", "cpu", "cuda", "mps")
BUILTIN_FAMILIES = ("mlp", "vit")
BUILTIN_VARIANTS = ("swiglu", "geglu", "reglu", "gelu", "relu")
ROLES = ("candidate", "baseline")
# The corruptions of the OOD suite (checks/shift.py registers them; preflight checks the names).
DEFAULT_CORRUPTIONS = ("gaussian_noise", "blur", "contrast", "brightness", "rotation", "translation",
                       "pixelation", "salt_and_pepper")
_OOD_DEFAULTS = {"knn_k": 10, "odin_temperature": 1000.0, "odin_eps": 0.002,
                 "corruptions": list(DEFAULT_CORRUPTIONS), "ece_bins": 15}

# Profile defaults. `quick` is what the harness's own tests use (seconds); `standard` is the default
# audit (minutes on two CPU cores); `full` is meant for a GPU.
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1],
        "families": ["mlp"],
        "variants": ["swiglu", "relu", "gelu"],
        "training": {"epochs": 12, "batch_size": 64, "learning_rate": 3e-3, "weight_decay": 1e-4},
        "adversarial": {"eps": 0.1, "eps_l2": 0.5, "steps": 5, "n_examples": 120,
                        "budgets": [0.05, 0.1, 0.2], "large_eps": 1.0,
                        "attacks": ["fgsm", "pgd", "pgd_l2", "square"],
                        "square_queries": 200, "cw_steps": 20, "apgd_steps": 10},
        "poisoning": {"families": ["mlp", "user"], "flip_rates": [0.2], "targeted_pair": [0, 1],
                      "targeted_rates": [0.4], "backdoor_target": 0, "backdoor_rates": [0.05],
                      "detection_rate": 0.05, "trigger_size": 2, "clean_label": False, "near_duplicate_rms": 0.03,
                      "scan_steps": 200, "mode": "auto", "fine_tune_share": 0.25, "early_stopping_patience": 3, "cheaper_seeds": 2},
        "ood": {"n_examples": 120, "bootstrap": 200, **_OOD_DEFAULTS},
        "numerical": {"n_examples": 120, "op_examples": 25, "compile": False, "golden_probe": 32,
                      "golden_dir": "golden", "determinism_epochs": 1, "implementations": {}},
    },
    "standard": {
        "seeds": [0, 1, 2],
        "families": ["mlp", "vit"],
        "variants": list(BUILTIN_VARIANTS),
        "training": {"epochs": 30, "batch_size": 64, "learning_rate": 3e-3, "weight_decay": 1e-4},
        "adversarial": {"eps": 0.1, "eps_l2": 0.5, "steps": 10, "n_examples": 360,
                        "budgets": [0.05, 0.1, 0.2, 0.3], "large_eps": 1.0,
                        # the documented cheaper ensemble: AutoAttack's APGD-CE, APGD-DLR, APGD-T and
                        # Square, with fewer iterations and queries, plus FGSM and PGD (Linf, L2);
                        # its Linf worst case matches the standard AutoAttack's (BENCHMARKS.md);
                        # CW-L2 and the standard AutoAttack itself run in the full profile
                        "attacks": ["fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "apgd_t", "square"],
                        "square_queries": 300, "cw_steps": 50, "apgd_steps": 20},
        # Every rate retrains every model of the listed families on all seeds. The vision
        # transformers train about seven times slower than the MLPs, so the standard profile
        # poisons the MLP family (all five FFN variants) and the full profile adds the ViTs.
        "poisoning": {"families": ["mlp", "user"], "flip_rates": [0.05, 0.1, 0.2],
                      "targeted_pair": [0, 1], "targeted_rates": [0.2, 0.4], "backdoor_target": 0,
                      "backdoor_rates": [0.01, 0.03, 0.1], "detection_rate": 0.03, "trigger_size": 2, "clean_label": False,
                      "near_duplicate_rms": 0.03, "scan_steps": 200,
                      "mode": "auto", "fine_tune_share": 0.25, "early_stopping_patience": 3, "cheaper_seeds": 2},
        "ood": {"n_examples": 360, "bootstrap": 1000, **_OOD_DEFAULTS},
        "numerical": {"n_examples": 360, "op_examples": 100, "compile": False, "golden_probe": 64,
                      "golden_dir": "golden", "determinism_epochs": 1, "implementations": {}},
    },
    "full": {
        "seeds": [0, 1, 2, 3, 4],
        "families": ["mlp", "vit"],
        "variants": list(BUILTIN_VARIANTS),
        "training": {"epochs": 60, "batch_size": 64, "learning_rate": 3e-3, "weight_decay": 1e-4},
        "adversarial": {"eps": 0.1, "eps_l2": 0.5, "steps": 40, "n_examples": 360,
                        "budgets": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3], "large_eps": 1.0,
                        # standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on top of the rest
                        "attacks": ["fgsm", "pgd", "pgd_l2", "cw_l2", "apgd_ce", "apgd_dlr", "apgd_t",
                                    "square", "autoattack"],
                        "square_queries": 5000, "cw_steps": 100, "apgd_steps": 100},
        "poisoning": {"families": ["mlp", "vit", "user"], "flip_rates": [0.01, 0.05, 0.1, 0.2],
                      "targeted_pair": [0, 1], "targeted_rates": [0.1, 0.2, 0.4],
                      "backdoor_target": 0, "backdoor_rates": [0.005, 0.01, 0.03, 0.1],
                      "detection_rate": 0.03,
                      "trigger_size": 2, "clean_label": True, "near_duplicate_rms": 0.03, "scan_steps": 300,
                      "mode": "auto", "fine_tune_share": 0.25, "early_stopping_patience": 3, "cheaper_seeds": 2},
        "ood": {"n_examples": 360, "bootstrap": 2000, **_OOD_DEFAULTS},
        # torch.compile of the op costs about 30 s of compilation on a two-core CPU: full only
        "numerical": {"n_examples": 360, "op_examples": 300, "compile": True, "golden_probe": 64,
                      "golden_dir": "golden", "determinism_epochs": 2, "implementations": {}},
    },
}

# Risk tolerance is the user's (NIST AI RMF MAP 1.5): every threshold can be set under
# [tool.swiglu_audit.policy] and is echoed in the report.
DEFAULT_POLICY: dict[str, Any] = {
    "alpha": 0.05,  # significance level of paired tests
    "confidence_level": 0.95,  # confidence intervals
    "fail_on_warn": False,  # treat WARN findings as failures (exit status 1)
    "max_robust_accuracy_drop": 0.05,  # candidate vs baseline, worst-case and transfer robust accuracy
    "warn_below_robust_accuracy": 0.3,  # a model this weak under the attack ensemble gets a WARN
    "masking_tolerance": 0.03,  # slack of the iterative/monotone/more-iterations sanity checks
    "chance_margin": 0.1,  # at the large budget, accuracy must be within this of chance
    "black_box_margin": 0.05,  # black-box may beat the white-box worst case by at most this
    "max_zero_gradient_share": 0.05,  # share of examples with an all-zero input gradient
    "max_label_flip_accuracy_drop": 0.10,  # clean accuracy lost to label flipping, per model
    "max_label_flip_drop_excess": 0.05,  # candidate loses this much more than a baseline
    "max_targeted_flip_success": 0.25,  # more source-class inputs sent to the target than clean
    "max_backdoor_success": 0.5,  # backdoor attack success rate (above the base rate) gets a WARN
    "max_backdoor_success_excess": 0.05,  # candidate's ASR above a baseline's
    "min_poison_detection_auroc": 0.8,  # best detector's AUROC on planted backdoor poison
    "max_detection_auroc_drop": 0.05,  # candidate vs baseline, spectral-signature AUROC
    "max_backdoor_base_rate": 0.3,  # clean model sends this share of triggered inputs to the target: FAIL
    "min_trigger_anomaly_index": 3.0,  # a recovered trigger this anomalous, with samples using it: FAIL
    "min_scan_recall": 0.5,  # the scan must find this share of the harness's planted poison to PASS
    "max_leakage_share": 0.01,  # test/val samples duplicated in train: WARN above 0, FAIL above this
    "max_duplicate_share": 0.01,  # duplicated training samples
    "max_label_error_share": 0.02,  # likely label errors in the training set
    "warn_below_ood_auroc": 0.85,  # far-OOD AUROC of the chosen detector under this gets a WARN
    "warn_below_near_ood_auroc": 0.7,  # the same for near OOD, which is harder by construction
    "max_ood_auroc_drop": 0.05,  # candidate vs baseline, MSP AUROC
    "max_aurc": 0.05,  # area under the risk-coverage curve of selective prediction
    "max_corruption_accuracy_drop": 0.3,  # clean accuracy minus mean accuracy under corruptions
    "max_corruption_accuracy_gap": 0.03,  # candidate vs baseline, mean accuracy under corruptions
    "max_ece_under_shift": 0.15,  # expected calibration error averaged over corruptions
    "max_subpopulation_accuracy_drop": 0.1,  # tabular: accuracy lost on a subpopulation held out of training
    "max_fp16_flip_rate": 0.01,  # share of predictions that flip under float16
    "max_bf16_flip_rate": 0.02,  # share of predictions that flip under bfloat16 autocast
    "max_nondeterminism": 0.0,  # largest weight difference between two same-seed trainings (CPU)
    "max_nondeterminism_accelerator": 1e-3,  # the same on CUDA/MPS, which are not bitwise deterministic
    "max_device_logit_deviation": 1e-2,  # CPU vs CUDA/MPS logits (TF32 matmuls on CUDA by default)
    "max_device_flip_rate": 0.01,  # share of predictions that differ between CPU and accelerator
    "golden_tolerance_float32": 1e-4,  # largest logit deviation from the golden file, float32
    "golden_tolerance_bfloat16": 5e-2,  # the same under bfloat16 autocast
    "min_fp16_headroom": 2.0,  # float16 max / largest FFN activation must stay above this
    "max_clean_accuracy_drop": 0.02,  # candidate vs baseline, clean accuracy (efficiency claim)
    "max_param_mismatch": 0.05,  # relative parameter-count difference tolerated between variants
    "max_efficiency_loss": 0.25,  # candidate vs baseline: FLOPs, steps, time, memory to target, relative
    "min_efficiency_gain": 0.0,  # require the candidate to need this share fewer FLOPs to target (0: no requirement)
    "efficiency_target_accuracy": 0.0,  # validation-accuracy target of the efficiency suite (0: automatic)
}

_TRAINING_KEYS = {"epochs": int, "batch_size": int, "learning_rate": float, "weight_decay": float}
_SECTION_KEYS: dict[str, dict[str, Any]] = {  # key -> type, or (list, item type)
    "training": _TRAINING_KEYS,
    "adversarial": {"eps": float, "eps_l2": float, "steps": int, "n_examples": int,
                    "budgets": (list, float), "large_eps": float, "attacks": (list, str),
                    "square_queries": int, "cw_steps": int, "apgd_steps": int},
    "poisoning": {"families": (list, str), "flip_rates": (list, float), "targeted_pair": (list, int),
                  "targeted_rates": (list, float), "backdoor_target": int,
                  "backdoor_rates": (list, float), "detection_rate": float, "trigger_size": int, "clean_label": bool, "scan_steps": int,
                  "near_duplicate_rms": float, "mode": str, "fine_tune_share": float,
                  "early_stopping_patience": int, "cheaper_seeds": int},
    "ood": {"n_examples": int, "bootstrap": int, "knn_k": int, "odin_temperature": float,
            "odin_eps": float, "corruptions": (list, str), "ece_bins": int},
    "numerical": {"n_examples": int, "op_examples": int, "compile": bool, "golden_probe": int,
                  "golden_dir": str, "determinism_epochs": int, "implementations": dict},
}
_TOP_KEYS = {
    "profile", "device", "report_dir", "cache_dir", "seeds", "families", "variants", "dataset",
    "models", "include_builtin_zoo", "policy", "history_dir", "save", "compare", "gates", "max_minutes",
    *_SECTION_KEYS,
}
_MODEL_KEYS = {"name", "factory", "weights", "role"}


@dataclass(frozen=True)
class UserModel:
    """A model the user brings: `factory` is `package.module:callable` (see README)."""

    name: str
    factory: str
    role: str = "baseline"
    weights: str | None = None  # safetensors file; when set, the model is loaded, not trained


@dataclass(frozen=True)
class AuditConfig:
    """Everything one audit run needs to know. Built once per session; never mutated."""

    profile: str = "standard"
    device: str = "auto"
    report_dir: Path = Path("reports")
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] = BUILTIN_FAMILIES
    variants: tuple[str, ...] = BUILTIN_VARIANTS
    include_builtin_zoo: bool = True
    dataset: str | None = None  # `package.module:callable`; None means scikit-learn's digits
    user_models: tuple[UserModel, ...] = ()
    training: dict = field(default_factory=dict)
    adversarial: dict = field(default_factory=dict)
    poisoning: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)
    numerical: dict = field(default_factory=dict)
    policy: dict = field(default_factory=lambda: dict(DEFAULT_POLICY))
    project_root: Path = Path(".")
    update_golden: bool = False  # regenerate golden output files instead of comparing
    history_dir: Path = Path(DEFAULT_HISTORY_DIR)  # saved audits (history.py)
    save_run: bool = False  # save this audit to history_dir
    compare_with: str | None = None  # "last", a run id or a path: compare with it and gate
    gates: dict = field(default_factory=dict)  # check name or "default" -> allowed regression
    max_minutes: float = 0.0  # time budget: an audit whose plan needs longer stops before training (0: none)

    def project_path(self, value: str | os.PathLike) -> Path:
        """A path from a setting: as given when absolute, else relative to the project root."""
        return _resolve(self.project_root, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe echo of the configuration, for the report's reproducibility block."""
        return {
            "profile": self.profile,
            "device": self.device,
            "report_dir": str(self.report_dir),
            "seeds": list(self.seeds),
            "families": list(self.families),
            "variants": list(self.variants),
            "include_builtin_zoo": self.include_builtin_zoo,
            "dataset": self.dataset or "builtin:digits",
            "models": [vars(m) for m in self.user_models],
            "training": dict(self.training),
            "adversarial": dict(self.adversarial),
            "poisoning": dict(self.poisoning),
            "ood": dict(self.ood),
            "max_minutes": self.max_minutes,
            "numerical": dict(self.numerical),
            "policy": dict(self.policy),
            "update_golden": self.update_golden,
            "gates": dict(self.gates),
        }


def default_cache_dir() -> Path:
    """Checkpoints live outside any git checkout by default: $SWIGLU_AUDIT_CACHE, else XDG."""
    if os.environ.get("SWIGLU_AUDIT_CACHE"):
        return Path(os.environ["SWIGLU_AUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "swiglu-audit"


def read_pyproject_table(project_root: Path) -> dict[str, Any]:
    """The `[tool.swiglu_audit]` table of `project_root/pyproject.toml`, or {} when absent."""
    path = project_root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file and run again") from exc
    table = data.get("tool", {}).get("swiglu_audit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{TOOL_TABLE}] must be a table")
    return table


def build_config(
    table: dict[str, Any] | None = None,
    *,
    profile: str | None = None,
    device: str | None = None,
    report_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    seeds: str | None = None,
    project_root: Path | None = None,
    update_golden: bool = False,
    save: bool | None = None,
    compare_with: str | None = None,
    max_minutes: float | None = None,
) -> AuditConfig:
    """Merge profile defaults, the user's table and command-line values into one AuditConfig."""
    table = copy.deepcopy(table or {})
    root = Path(project_root or ".")
    _reject_unknown(table, _TOP_KEYS, f"[{TOOL_TABLE}]")

    profile = profile or table.get("profile", "standard")
    _check_choice(profile, PROFILES, "profile", OPT_PROFILE)
    defaults = copy.deepcopy(_PROFILE_DEFAULTS[profile])

    device = device or table.get("device", "auto")
    _check_choice(device, DEVICES, "device", OPT_DEVICE)

    sections = {}
    for name, keys in _SECTION_KEYS.items():
        user = table.get(name, {})
        _expect(isinstance(user, dict), f"[{TOOL_TABLE}.{name}] must be a table")
        _reject_unknown(user, set(keys), f"[{TOOL_TABLE}.{name}]")
        merged = {**defaults[name], **user}
        for key, kind in keys.items():
            if isinstance(kind, tuple):  # (list, element type)
                _expect(isinstance(merged[key], list) and merged[key],
                        f"[{TOOL_TABLE}.{name}] {key} must be a non-empty list")
                merged[key] = [_coerce(v, kind[1], f"{name}.{key}") for v in merged[key]]
                continue
            if kind is dict:  # a table of name = "package.module:callable"
                _expect(isinstance(merged[key], dict), f"[{TOOL_TABLE}.{name}.{key}] must be a table")
                for impl, path in merged[key].items():
                    _check_import_path(path, f"[{TOOL_TABLE}.{name}.{key}] {impl}")
                continue
            merged[key] = _coerce(merged[key], kind, f"{name}.{key}")
            if kind in (int, float):
                _expect(merged[key] >= 0, f"[{TOOL_TABLE}.{name}] {key} must not be negative")
        sections[name] = merged
    # attack and corruption names are checked against their registries at start-up (preflight)
    _expect(all(b > 0 for b in sections["adversarial"]["budgets"]),
            f"[{TOOL_TABLE}.adversarial] budgets must be positive")
    _expect(sections["adversarial"]["eps"] > 0, f"[{TOOL_TABLE}.adversarial] eps must be positive")
    _expect(sections["training"]["epochs"] >= 1, f"[{TOOL_TABLE}.training] epochs must be >= 1")
    _expect(sections["training"]["batch_size"] >= 1,
            f"[{TOOL_TABLE}.training] batch_size must be >= 1")
    _check_poisoning(sections["poisoning"])
    _expect(sections["ood"]["knn_k"] >= 1 and sections["ood"]["ece_bins"] >= 1
            and sections["ood"]["odin_temperature"] > 0,
            f"[{TOOL_TABLE}.ood] knn_k, ece_bins and odin_temperature must be positive")

    seed_list = _parse_seeds(seeds) if seeds is not None else table.get("seeds", defaults["seeds"])
    _expect(isinstance(seed_list, list) and bool(seed_list) and all(isinstance(s, int) for s in seed_list),
            f"[{TOOL_TABLE}] seeds must be a non-empty list of integers, e.g. seeds = [0, 1, 2]")
    _expect(len(set(seed_list)) == len(seed_list), f"[{TOOL_TABLE}] seeds must not repeat")

    families = _string_list(table.get("families", defaults["families"]), "families",
                            BUILTIN_FAMILIES)
    variants = _string_list(table.get("variants", defaults["variants"]), "variants", None)

    user_models = _parse_models(table.get("models", []))
    include_builtin = table.get("include_builtin_zoo", not user_models)
    _expect(isinstance(include_builtin, bool), f"[{TOOL_TABLE}] include_builtin_zoo must be true or false")
    dataset = table.get("dataset")
    if dataset is not None:
        _check_import_path(dataset, f"[{TOOL_TABLE}] dataset")

    policy = dict(DEFAULT_POLICY)
    user_policy = table.get("policy", {})
    _expect(isinstance(user_policy, dict), f"[{TOOL_TABLE}.policy] must be a table")
    _reject_unknown(user_policy, set(DEFAULT_POLICY), f"[{TOOL_TABLE}.policy]")
    for key, value in user_policy.items():
        kind = type(DEFAULT_POLICY[key])
        policy[key] = _coerce(value, kind, f"policy.{key}")
    for key in ("alpha",):
        _expect(0 < policy[key] < 1, f"[{TOOL_TABLE}.policy] {key} must be between 0 and 1")
    _expect(0 < policy["confidence_level"] < 1,
            f"[{TOOL_TABLE}.policy] confidence_level must be between 0 and 1, e.g. 0.95")

    gates = table.get("gates", {})
    _expect(isinstance(gates, dict), f"[{TOOL_TABLE}.gates] must be a table of check = \"0.02\" or \"5%\"")
    from .history import parse_gates

    try:
        parse_gates(gates)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    save = table.get("save", False) if save is None or save is False else save
    _expect(isinstance(save, bool), f"[{TOOL_TABLE}] save must be true or false")
    compare_with = compare_with or table.get("compare")
    _expect(compare_with is None or isinstance(compare_with, str),
            f"[{TOOL_TABLE}] compare must be \"last\", a saved run id or a path")

    max_minutes = table.get("max_minutes", 0.0) if max_minutes is None else max_minutes
    _expect(isinstance(max_minutes, (int, float)) and not isinstance(max_minutes, bool) and max_minutes >= 0,
            f"[{TOOL_TABLE}] max_minutes must be a number of minutes, 0 or more (0: no budget); "
            f"got {max_minutes!r}")

    return AuditConfig(
        profile=profile,
        device=device,
        report_dir=_resolve(root, report_dir or table.get("report_dir", "reports")),
        cache_dir=_resolve(root, cache_dir or table.get("cache_dir") or default_cache_dir()),
        seeds=tuple(seed_list),
        families=tuple(families) if include_builtin else (),
        variants=tuple(variants),
        include_builtin_zoo=include_builtin,
        dataset=dataset,
        user_models=user_models,
        policy=policy,
        project_root=root,
        update_golden=update_golden,
        history_dir=_resolve(root, table.get("history_dir", DEFAULT_HISTORY_DIR)),
        save_run=save,
        compare_with=compare_with,
        gates={str(k): str(v) for k, v in gates.items()},
        max_minutes=float(max_minutes),
        **sections,
    )


def _check_poisoning(section: dict) -> None:
    where = f"[{TOOL_TABLE}.poisoning]"
    for family in section["families"]:
        _check_choice(family, BUILTIN_FAMILIES + ("user",), "family", f"{where} families")
    for key in ("flip_rates", "targeted_rates", "backdoor_rates"):
        _expect(all(0.0 < r < 1.0 for r in section[key]), f"{where} {key} must lie in (0, 1)")
        section[key] = sorted(set(section[key]))
    pair = section["targeted_pair"]
    _expect(len(pair) == 2 and pair[0] != pair[1] and min(pair) >= 0,
            f"{where} targeted_pair must be two different class indices [source, target]")
    _expect(section["detection_rate"] in section["backdoor_rates"],
            f"{where} detection_rate = {section['detection_rate']} must be one of backdoor_rates "
            f"{section['backdoor_rates']} (the detectors read the model trained at that rate)")
    _expect(section["trigger_size"] >= 1, f"{where} trigger_size must be at least 1 pixel")
    _check_choice(section["mode"], POISONING_MODES, "mode", f"{where} mode")
    _expect(0.0 < section["fine_tune_share"] <= 1.0,
            f"{where} fine_tune_share must lie in (0, 1]: the share of the clean training's epochs that "
            "fine-tuning on a poisoned set takes")
    _expect(section["early_stopping_patience"] >= 0,
            f"{where} early_stopping_patience must be a whole number of epochs >= 0 (0: no early stopping "
            "of the fine-tuned poisoned trainings)")
    _expect(section["cheaper_seeds"] >= 0,
            f"{where} cheaper_seeds must be a whole number >= 0: how many of the seeds a model poisoned the cheaper "
            "way is trained for on poisoned data (0: every seed)")


def _parse_models(raw: Any) -> tuple[UserModel, ...]:
    where = f"[[{TOOL_TABLE}.models]]"
    _expect(isinstance(raw, list), f"{where} must be an array of tables")
    models, names = [], set()
    for i, entry in enumerate(raw):
        _expect(isinstance(entry, dict), f"{where} entry {i} must be a table")
        _reject_unknown(entry, _MODEL_KEYS, f"{where} entry {i}")
        for key in ("name", "factory"):
            _expect(isinstance(entry.get(key), str) and entry[key],
                    f"{where} entry {i} needs a '{key}' string")
        name = entry["name"]
        _expect(name not in names, f"{where}: model name '{name}' is used twice")
        names.add(name)
        _check_import_path(entry["factory"], f"{where} '{name}' factory")
        role = entry.get("role", "baseline")
        _check_choice(role, ROLES, f"role of model '{name}'", f"{where} role")
        models.append(UserModel(name=name, factory=entry["factory"], role=role,
                                weights=entry.get("weights")))
    if models:
        candidates = [m.name for m in models if m.role == "candidate"]
        _expect(len(candidates) == 1,
                f"{where}: exactly one model needs role = \"candidate\" (the SwiGLU model under "
                f"audit); found {len(candidates)}: {candidates}")
        _expect(len(models) >= 2, f"{where}: give at least one baseline beside the candidate")
    return tuple(models)


def _check_import_path(value: Any, where: str) -> None:
    ok = isinstance(value, str) and value.count(":") == 1 and all(value.split(":"))
    _expect(ok, f"{where} = {value!r} is not an import path; write it as "
                "\"package.module:callable\"")


def _parse_seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{OPT_SEEDS}={text!r}: give comma-separated integers, e.g. 0,1,2") from None


def _string_list(value: Any, key: str, allowed: tuple[str, ...] | None) -> list[str]:
    _expect(isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value),
            f"[{TOOL_TABLE}] {key} must be a non-empty list of strings")
    if allowed:
        for v in value:
            _check_choice(v, allowed, key, f"[{TOOL_TABLE}] {key}")
    return list(value)


def _coerce(value: Any, kind: type, key: str) -> Any:
    if kind is str:
        _expect(isinstance(value, str), f"[{TOOL_TABLE}] {key} must hold strings, got {value!r}")
        return value
    if kind is bool:
        _expect(isinstance(value, bool), f"[{TOOL_TABLE}] {key} must be true or false")
        return value
    if kind is int:
        _expect(isinstance(value, int) and not isinstance(value, bool),
                f"[{TOOL_TABLE}] {key} must be an integer, got {value!r}")
        return value
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool),
            f"[{TOOL_TABLE}] {key} must be a number, got {value!r}")
    return float(value)


def _check_choice(value: Any, allowed: tuple[str, ...], what: str, option: str) -> None:
    _expect(value in allowed, f"{option}: unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def _reject_unknown(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    _expect(not unknown, f"{where}: unknown key(s) {', '.join(unknown)}; known keys are "
                         f"{', '.join(sorted(known))}")


def _resolve(root: Path, value: str | os.PathLike) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
