"""One frozen `AuditConfig`, built from a profile, `[tool.swiglu_audit]` and the command line.

Precedence, lowest first: the profile's defaults, the user's `[tool.swiglu_audit]` table, then the
command line. Every key is checked here, so a typo fails at start-up with the key's name and the
list of keys we know, instead of being silently ignored. No torch import here: the plugin imports
this module at pytest start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import (
    BUILTIN_FAMILIES,
    PROFILES,
    SECTION_NAMES,
    SECTIONS,
    SEED_LIMIT,
    TOOL_TABLE,
    AdversarialSettings,
    FairnessSettings,
    NumericalSettings,
    OodSettings,
    PoisoningSettings,
    PrivacySettings,
    StatisticsSettings,
    TrainingSettings,
    build_sections,
    check_choice,
    check_import_path,
    check_policy,
    coerce,
    default_policy,
    expect,
    is_seed,
    profile_defaults,
    reject_unknown,
)

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
OPT_EXECUTOR = "--swiglu-audit-executor"
OPT_PLAN = "--swiglu-audit-plan"
OPT_MAX_MINUTES = "--swiglu-audit-max-minutes"
OPT_ACCEPT_REDUCED = "--swiglu-audit-accept-reduced-plan"
OPT_LIVE = "--swiglu-audit-live"
DEFAULT_HISTORY_DIR = ".swiglu-audit-history"
DEVICES = ("auto", "cpu", "cuda", "mps")
BUILTIN_VARIANTS = tuple(profile_defaults("standard")["variants"])  # every FFN variant of the zoo
ROLES = ("candidate", "baseline")
# The policy's defaults and the profiles' settings are data: settings.toml, read by settings.py.
DEFAULT_POLICY: dict[str, Any] = default_policy()
# The corruptions of the OOD suite when none are configured (checks the names: preflight).
DEFAULT_CORRUPTIONS = tuple(profile_defaults("standard")["ood"]["corruptions"])

_TOP_KEYS = {
    "profile", "device", "report_dir", "cache_dir", "seeds", "families", "variants", "dataset",
    "models", "include_builtin_zoo", "policy", "history_dir", "save", "compare", "baseline", "gates", "max_minutes",
    "live",
    *SECTION_NAMES,
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
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())  # local; with cache_url, its copy
    cache_url: str | None = None  # a cache shared on an object store (s3://, gs://): every worker's entries
    seeds: tuple[int, ...] = (0, 1, 2)
    # seeds = "auto": comparisons still inconclusive at `seeds` get more seeds, up to
    # statistics.max_seeds per architecture (sequential.py)
    auto_seeds: bool = False
    families: tuple[str, ...] = BUILTIN_FAMILIES
    variants: tuple[str, ...] = BUILTIN_VARIANTS
    include_builtin_zoo: bool = True
    dataset: str | None = None  # `package.module:callable`; None means scikit-learn's digits
    live: str | None = None  # production inputs for the drift suite: an .npz/.npy path or `package.module:callable`
    user_models: tuple[UserModel, ...] = ()
    training: TrainingSettings = field(default_factory=lambda: _section_default("training"))
    adversarial: AdversarialSettings = field(default_factory=lambda: _section_default("adversarial"))
    poisoning: PoisoningSettings = field(default_factory=lambda: _section_default("poisoning"))
    ood: OodSettings = field(default_factory=lambda: _section_default("ood"))
    numerical: NumericalSettings = field(default_factory=lambda: _section_default("numerical"))
    statistics: StatisticsSettings = field(default_factory=lambda: _section_default("statistics"))
    fairness: FairnessSettings = field(default_factory=lambda: _section_default("fairness"))
    privacy: PrivacySettings = field(default_factory=lambda: _section_default("privacy"))
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
            "auto_seeds": self.auto_seeds,
            "families": list(self.families),
            "variants": list(self.variants),
            "include_builtin_zoo": self.include_builtin_zoo,
            "dataset": self.dataset or "builtin:digits",
            "live": self.live,
            "models": [vars(m) for m in self.user_models],
            **{section.name: getattr(self, section.name).to_dict() for section in SECTIONS},
            "max_minutes": self.max_minutes,
            "policy": dict(self.policy),
            "update_golden": self.update_golden,
            "gates": dict(self.gates),
        }


# the fsspec packages that speak each object store's protocol, for the error that names the fix
PROTOCOL_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
                     "az": ("adlfs", None), "abfs": ("adlfs", None)}


def is_url(value: object) -> bool:
    """A cache location given as an fsspec URL (`s3://bucket/prefix`); `file://` is a plain folder."""
    return isinstance(value, str) and "://" in value and not value.startswith("file://")


def check_url(url: str) -> None:
    """Raise ConfigError when no installed fsspec implementation speaks the URL's protocol."""
    protocol = url.split("://", 1)[0]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        package, extra = PROTOCOL_PACKAGES.get(protocol, (None, None))
        fix = (f"pip install 'swiglu-audit[{extra}]'" if extra else f"pip install {package}" if package
               else "give an fsspec URL such as s3://bucket/prefix or gs://bucket/prefix, or a folder")
        raise ConfigError(f"cache_dir {url!r}: no installed filesystem speaks {protocol}:// ({exc}); {fix}") from None


def mirror_dir(url: str) -> Path:
    """This machine's copy of a shared cache: a folder of the local cache named after the URL."""
    import hashlib

    local = default_cache_dir()
    return local / "shared" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def apply_changes(config: AuditConfig, changes: dict[str, Any]) -> AuditConfig:
    """`config` with some settings changed: {"seeds": [0, 1]} at the top level, or a section's
    {"poisoning": {"scan_steps": 50}} (lists become the tuples the configuration holds). The budget's
    cuts are written this way, so that xdist workers can apply the cut the controller chose."""
    top: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict):
            section = getattr(config, key)
            top[key] = dataclasses.replace(section, **{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        else:
            top[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(config, **top)


def local_path(value: str | os.PathLike) -> str | os.PathLike:
    """A `file://` URL as the path it names (`file:///x`, `file://localhost/x`); anything else as given."""
    if isinstance(value, str) and value.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(value).path)
    return value


def default_cache_dir() -> Path:
    """Checkpoints live outside any git checkout by default: $SWIGLU_AUDIT_CACHE, else XDG."""
    if os.environ.get("SWIGLU_AUDIT_CACHE") and not is_url(os.environ["SWIGLU_AUDIT_CACHE"]):
        return Path(local_path(os.environ["SWIGLU_AUDIT_CACHE"]))
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
    live: str | None = None,
) -> AuditConfig:
    """Merge profile defaults, the user's table and command-line values into one AuditConfig."""
    table = copy.deepcopy(table or {})
    root = Path(project_root or ".")
    reject_unknown(table, _TOP_KEYS, f"[{TOOL_TABLE}]")

    profile = profile or table.get("profile", "standard")
    check_choice(profile, PROFILES, "profile", OPT_PROFILE)
    defaults = profile_defaults(profile)

    device = device or table.get("device", "auto")
    check_choice(device, DEVICES, "device", OPT_DEVICE)
    # attack and corruption names are checked against their registries at start-up (preflight)
    sections = build_sections(defaults, table)

    given = _parse_seeds(seeds) if seeds is not None else table.get("seeds", defaults["seeds"])
    auto_seeds = given == "auto"
    # with "auto", start where the profile starts; the rest is added where a comparison needs it
    seed_list: Any = list(defaults["seeds"]) if auto_seeds else given
    _check_seeds(seed_list, OPT_SEEDS if seeds is not None else f"[{TOOL_TABLE}] seeds")

    families = _string_list(table.get("families", defaults["families"]), "families",
                            BUILTIN_FAMILIES)
    variants = _string_list(table.get("variants", defaults["variants"]), "variants", None)

    user_models = _parse_models(table.get("models", []))
    include_builtin = table.get("include_builtin_zoo", not user_models)
    expect(isinstance(include_builtin, bool), f"[{TOOL_TABLE}] include_builtin_zoo must be true or false")
    # no model means no per-model check: an audit that could only PASS
    expect(include_builtin or bool(user_models),
           f"[{TOOL_TABLE}] include_builtin_zoo = false with no [[{TOOL_TABLE}.models]] leaves no model to audit "
           f"(the audit would run no per-model check and pass); add your models as [[{TOOL_TABLE}.models]] tables "
           "(one candidate and at least one baseline), or set include_builtin_zoo = true to audit the built-in zoo")
    dataset = table.get("dataset")
    if dataset is not None:
        check_import_path(dataset, f"[{TOOL_TABLE}] dataset")

    policy = dict(DEFAULT_POLICY)
    user_policy = table.get("policy", {})
    expect(isinstance(user_policy, dict), f"[{TOOL_TABLE}.policy] must be a table")
    reject_unknown(user_policy, set(DEFAULT_POLICY), f"[{TOOL_TABLE}.policy]")
    for key, value in user_policy.items():
        kind = type(DEFAULT_POLICY[key])
        policy[key] = coerce(value, kind, f"policy.{key}")
    check_policy(policy)
    _tie_alpha_to_level(policy, user_policy)

    gates = table.get("gates", {})
    expect(isinstance(gates, dict), f"[{TOOL_TABLE}.gates] must be a table of check = \"0.02\" or \"5%\"")
    from .scheduled.regressions import parse_gates

    try:
        parsed_gates = parse_gates(gates)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for name, gate in parsed_gates.items():  # "nan" and "inf" parse as floats, and no gate means them
        expect(math.isfinite(gate.amount) and gate.amount >= 0,
               f"[{TOOL_TABLE}.gates] {name} = {gates[name]!r} is not an allowed regression (a finite amount, 0 "
               "or more: a gate only loosens the default, which is no worsening at all); give one such as "
               "\"0.02\" (absolute) or \"5%\" (relative)")
    save = table.get("save", False) if save is None or save is False else save
    expect(isinstance(save, bool), f"[{TOOL_TABLE}] save must be true or false")
    compare_with = compare_with or table.get("compare")
    expect(compare_with is None or (isinstance(compare_with, str) and bool(compare_with.strip())),
           f"[{TOOL_TABLE}] compare must be \"accepted\", \"last\", a saved run id or a path; got {compare_with!r}")
    pinned = table.get("baseline")  # a release audit's fixed baseline: a saved run id
    if pinned is not None:
        expect(isinstance(pinned, str) and bool(pinned), f"[{TOOL_TABLE}] baseline must be a saved run id")
        expect(compare_with in (None, pinned), f"[{TOOL_TABLE}] baseline = {pinned!r} pins the baseline, but "
               f"compare = {compare_with!r} names another; keep one of them")
        compare_with = pinned

    max_minutes = table.get("max_minutes", 0.0) if max_minutes is None else max_minutes
    expect(isinstance(max_minutes, (int, float)) and not isinstance(max_minutes, bool) and max_minutes >= 0
           and math.isfinite(max_minutes),
           f"[{TOOL_TABLE}] max_minutes must be a finite number of minutes, 0 or more (0: no budget); "
           f"got {max_minutes!r}")

    live = live or table.get("live")
    expect(live is None or (isinstance(live, str) and bool(live)),
           f"[{TOOL_TABLE}] live must be a path to an .npz or .npy file or \"package.module:callable\"")
    if live and live.endswith((".npz", ".npy")):  # a file: relative to the project, like the other paths
        live = str(_resolve(root, live))

    table_report_dir = _path_setting(table, "report_dir", "a folder", "reports")  # checked even where the CLI overrides it
    history_dir = _path_setting(table, "history_dir", "a folder", DEFAULT_HISTORY_DIR)
    if "cache_dir" in table:  # "" would silently fall back to the default cache
        _path_setting(table, "cache_dir", "a folder or an object-store URL (s3://bucket/prefix)")
    cache_location = cache_dir or table.get("cache_dir") or os.environ.get("SWIGLU_AUDIT_CACHE") or default_cache_dir()
    expect(isinstance(cache_location, (str, os.PathLike)) and bool(str(cache_location)),
           f"[{TOOL_TABLE}] cache_dir must be a folder or an object-store URL (s3://bucket/prefix); "
           f"got {cache_location!r}")
    cache_location = local_path(cache_location)
    cache_url = str(cache_location).rstrip("/") if is_url(cache_location) else None
    if cache_url:
        check_url(cache_url)

    return AuditConfig(
        profile=profile,
        live=live,
        device=device,
        report_dir=_resolve(root, report_dir or table_report_dir),
        cache_dir=mirror_dir(cache_url) if cache_url else _resolve(root, cache_location),
        cache_url=cache_url,
        seeds=tuple(seed_list),
        auto_seeds=auto_seeds,
        families=tuple(families) if include_builtin else (),
        variants=tuple(variants),
        include_builtin_zoo=include_builtin,
        dataset=dataset,
        user_models=user_models,
        policy=policy,
        project_root=root,
        update_golden=update_golden,
        history_dir=_resolve(root, history_dir),
        save_run=save,
        compare_with=compare_with,
        gates={str(k): str(v) for k, v in gates.items()},
        max_minutes=float(max_minutes),
        **sections,
    )


def _section_default(name: str) -> Any:
    """The standard profile's section (sections are frozen, so one built set serves every default)."""
    return _standard_sections()[name]


@functools.cache
def _standard_sections() -> dict[str, Any]:
    return build_sections(profile_defaults("standard"), {})


def _parse_models(raw: Any) -> tuple[UserModel, ...]:
    where = f"[[{TOOL_TABLE}.models]]"
    expect(isinstance(raw, list), f"{where} must be an array of tables")
    models, names = [], set()
    for i, entry in enumerate(raw):
        expect(isinstance(entry, dict), f"{where} entry {i} must be a table")
        reject_unknown(entry, _MODEL_KEYS, f"{where} entry {i}")
        for key in ("name", "factory"):
            expect(isinstance(entry.get(key), str) and entry[key],
                   f"{where} entry {i} needs a '{key}' string")
        name = entry["name"]
        expect(name not in names, f"{where}: model name '{name}' is used twice")
        names.add(name)
        check_import_path(entry["factory"], f"{where} '{name}' factory")
        role = entry.get("role", "baseline")
        check_choice(role, ROLES, f"role of model '{name}'", f"{where} role")
        weights = entry.get("weights")
        # "" is not "no weights": leave the key out to train the model
        expect(weights is None or (isinstance(weights, str) and bool(weights.strip())),
               f"{where} '{name}' weights = {weights!r} must be the path of a safetensors file, e.g. "
               "weights = \"weights/model.safetensors\"; leave the key out to train the model instead")
        models.append(UserModel(name=name, factory=entry["factory"], role=role, weights=weights))
    if models:
        candidates = [m.name for m in models if m.role == "candidate"]
        expect(len(candidates) == 1,
               f"{where}: exactly one model needs role = \"candidate\" (the SwiGLU model under "
               f"audit); found {len(candidates)}: {candidates}")
        expect(len(models) >= 2, f"{where}: give at least one baseline beside the candidate")
    return tuple(models)


def _tie_alpha_to_level(policy: dict, user_policy: dict) -> None:
    """alpha is 1 - confidence_level, so a p-value and an interval in one sentence cannot
    disagree: set either and the other follows; set both apart and it is a usage error."""
    if "alpha" in user_policy and "confidence_level" in user_policy:
        expect(abs(policy["alpha"] + policy["confidence_level"] - 1) < 1e-9,
               f"[{TOOL_TABLE}.policy] alpha = {policy['alpha']} and confidence_level = "
               f"{policy['confidence_level']} disagree: alpha must be 1 - confidence_level (a test at alpha "
               "rejects exactly when the interval excludes the null). Set only one of them")
    elif "alpha" in user_policy:
        policy["confidence_level"] = round(1 - policy["alpha"], 12)
    else:
        policy["alpha"] = round(1 - policy["confidence_level"], 12)


def _check_seeds(seeds: Any, where: str) -> None:
    """Distinct integers in [0, 2**32): numpy's and scikit-learn's seeding refuse the rest, after training."""
    expect(isinstance(seeds, list) and bool(seeds) and all(is_seed(s) for s in seeds),
           f"{where} must be a non-empty list of integers from 0 to {SEED_LIMIT - 1} (not true or false), "
           f"e.g. seeds = [0, 1, 2], or \"auto\"; got {seeds!r}")
    expect(len(set(seeds)) == len(seeds), f"{where} must not repeat; got {seeds!r}")


def _path_setting(table: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    """A path from the table: a non-empty string (a number or a list is no path, and "" would
    silently name the project root)."""
    value = table.get(key, default)
    example = f"e.g. {key} = \"{default}\"; " if default else ""
    expect(isinstance(value, str) and bool(value.strip()),
           f"[{TOOL_TABLE}] {key} must be a non-empty string naming {what}; {example}got {value!r}")
    return str(value)


def _parse_seeds(text: str) -> list[int] | str:
    if text.strip() == "auto":
        return "auto"
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{OPT_SEEDS}={text!r}: give comma-separated integers, e.g. 0,1,2, or auto") from None


def _string_list(value: Any, key: str, allowed: tuple[str, ...] | None) -> list[str]:
    expect(isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value),
           f"[{TOOL_TABLE}] {key} must be a non-empty list of strings")
    if allowed:
        for v in value:
            check_choice(v, allowed, key, f"[{TOOL_TABLE}] {key}")
    return list(value)


def _resolve(root: Path, value: str | os.PathLike) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path)


