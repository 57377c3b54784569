"""Model specs: which models an audit holds, read from models/zoo.toml and the user's config.

Torch-free, because pytest needs the model names at collection time to parametrize the suites.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources

from ..config import AuditConfig
from ..errors import ConfigError

USER_GROUP = "user"
MODELS_TABLE = "[[tool.swiglu_audit.models]]"
# A model's name is part of file names (golden outputs, per-model reports) and test ids: letters,
# digits, '-', '_' and '.', not starting with '.' (no hidden files, no '..', no path separators)
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # unique, readable: shows up in test ids and the report
    group: str  # models are compared only within a group (a built-in family, or "user")
    role: str  # "candidate" (the SwiGLU model under audit) or "baseline"
    family: str | None = None  # built-in only
    ffn: str | None = None  # built-in only
    arch: dict = field(default_factory=dict)  # nn.ModelConfig overrides, built-in only
    factory: str | None = None  # user only: "package.module:callable"
    weights: str | None = None  # user only: pretrained safetensors, then no training

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v not in (None, {})}

    @property
    def scope_family(self) -> str:
        """The name the suites' `families` settings scope this model by: "user" for the user's
        own models, else its built-in family."""
        return USER_GROUP if self.group == USER_GROUP else str(self.family)


def load_zoo_table() -> dict:
    text = resources.files("swiglu_audit.zoo_specs").joinpath("zoo.toml").read_text()
    return tomllib.loads(text)


def model_specs(config: AuditConfig) -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    if config.include_builtin_zoo:
        zoo = load_zoo_table()
        for variant in config.variants:
            if variant not in zoo["variants"]:
                raise ConfigError(f"[tool.swiglu_audit] variants: {variant!r} is not in the built-in "
                                  f"zoo ({', '.join(zoo['variants'])}); add a [variants.{variant}] "
                                  "table to models/zoo.toml and register its activation")
        candidates = [v for v in config.variants if zoo["variants"][v]["role"] == "candidate"]
        if len(candidates) != 1 or len(config.variants) < 2:
            raise ConfigError("[tool.swiglu_audit] variants must include the candidate "
                              f"({[v for v, t in zoo['variants'].items() if t['role'] == 'candidate']}) "
                              "and at least one baseline")
        for family in config.families:
            for variant in config.variants:
                specs.append(ModelSpec(
                    name=f"{variant}-{family}", group=family,
                    role=zoo["variants"][variant]["role"], family=family, ffn=variant,
                    arch=dict(zoo["families"][family])))
    for m in config.user_models:
        specs.append(ModelSpec(name=m.name, group=USER_GROUP, role=m.role, factory=m.factory,
                               weights=m.weights))
    problems = name_problems(config)
    if problems:  # the start-up check reports these one by one; here, a second line of defence
        raise ConfigError("; ".join(problems))
    return specs


def name_problems(config: AuditConfig) -> list[str]:
    """What is wrong with the audit's model names, one message each: repeated families or
    variants, a user's model named like a built-in one (the built-in one would never be audited),
    a name used twice, a name that is no safe file name."""
    problems = []
    builtin: set[str] = set()
    if config.include_builtin_zoo:
        for key, values in (("families", config.families), ("variants", config.variants)):
            repeated = _repeated(values)
            if repeated:
                problems.append(f"[tool.swiglu_audit] {key} lists {', '.join(map(repr, repeated))} more than "
                                "once; list each once (each makes its models again)")
        builtin = {f"{v}-{f}" for f in config.families for v in config.variants}
    names = [m.name for m in config.user_models]
    problems += [f"{MODELS_TABLE}: model name '{n}' is used by more than one model; give each its own name"
                 for n in _repeated(names)]
    for name in dict.fromkeys(names):
        if name in builtin:
            problems.append(f"{MODELS_TABLE} '{name}': the built-in zoo has a model of that name, which yours "
                            "would replace; rename yours, or set include_builtin_zoo = false")
        if not SAFE_NAME.fullmatch(name):
            problems.append(f"{MODELS_TABLE} '{name}': a model name may hold only letters, digits, '-', '_' "
                            "and '.', and not start with '.' (it names files); rename it, e.g. "
                            f"'{_safe_example(name)}'")
    return problems


def _repeated(values) -> list:
    return [v for v, n in Counter(values).items() if n > 1]


def _safe_example(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "my-model"


def comparison_pairs(specs: list[ModelSpec]) -> list[tuple[str, str]]:
    """(candidate, baseline) name pairs, within each group."""
    pairs = []
    for cand in (s for s in specs if s.role == "candidate"):
        pairs += [(cand.name, s.name) for s in specs if s.group == cand.group and s.role == "baseline"]
    return pairs
