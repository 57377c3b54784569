"""Checks made once at start-up, so that a broken setup stops the session before any training.

Everything about the user's setup that can be known without training is checked here, on the
controller, and every problem is reported at once as one usage error (exit 4) with one message per
problem: the import paths, the report and history folders, the model names, the dataset (keys,
shapes, dtypes, range, NaN, labels and classes, lengths), the class indices the poisoning settings
name, and each model (constructible, a forward pass on a probe batch on the audit's device, output
shape and dtype, finite outputs, trainable when it is to be trained, and its `weights` file: a
readable safetensors file whose keys and shapes match).
What only shows at run time (a model that diverges during training) still becomes ERROR findings.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path

from ..config import OPT_COMPARE, OPT_REPORT_DIR, OPT_SAVE, AuditConfig
from ..errors import ConfigError, ContractError
from ..util.imports import load_callable


class SetupError(ConfigError):  # type: ignore[misc]  # UsageError is final only in the stubs
    """One or more problems with the user's setup, one message each (pytest prints each as an
    `ERROR:` line and exits with status 4)."""


def check_import_paths(config: AuditConfig) -> None:
    problems = _import_problems(config) + _weights_file_problems(config)
    if problems:
        raise SetupError(*problems)


def _import_problems(config: AuditConfig) -> list[str]:
    problems = []
    targets = [(config.dataset, "[tool.swiglu_audit] dataset")] if config.dataset else []
    targets += [(m.factory, f"[[tool.swiglu_audit.models]] '{m.name}' factory") for m in config.user_models]
    for path, setting in targets:
        try:
            load_callable(path, setting, ConfigError)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def _weights_file_problems(config: AuditConfig) -> list[str]:
    """What can be told about each `weights` file without building its model."""
    problems = []
    for model in config.user_models:
        if not model.weights:
            continue
        setting = f"[[tool.swiglu_audit.models]] '{model.name}' weights"
        path = config.project_path(model.weights)
        if not path.is_file():
            problems.append(f"{setting} = '{model.weights}': no such file ({path}); fix the path")
        elif path.suffix != ".safetensors":
            problems.append(f"{setting} must be a .safetensors file (pickled checkpoints are not "
                            "loaded); convert it with safetensors.torch.save_file(model.state_dict(), path)")
        else:
            problems += [f"{setting} {path.name}: {p}" for p in weights_problems(path, None)]
    return problems


def check_setup(config: AuditConfig, show_tracebacks: bool = False):
    """Every static check, all problems at once: raises SetupError listing them, else returns the
    audit's data it loaded (an AuditData), which the plan and the checks of this process reuse.

    `show_tracebacks` appends each problem's traceback (for --swiglu-audit-debug or -v)."""
    from ..training.specs import name_problems

    imports = _import_problems(config)
    weights = _weights_file_problems(config)
    others = method_problems(config) + name_problems(config) + history_problems(config)
    if imports:  # nothing below can run without the imports
        raise SetupError(*imports, *weights, *others)
    from ..training.data import load_audit_data

    try:
        data = load_audit_data(config.dataset, config.cache_dir, config.live, config.fairness.group_feature)
    except ContractError as exc:  # the models cannot be probed without data
        raise SetupError(*_messages(exc, show_tracebacks), *weights, *others) from None
    others += class_setting_problems(config, data)
    if weights:  # weights that cannot be read: the models' probes would only repeat them
        raise SetupError(*weights, *others)
    messages: list[str] = []
    device = _probe_device(config, messages)
    for model in config.user_models if device is not None else ():
        try:
            check_user_model(config, model, data, device)
        except ContractError as exc:
            messages += _messages(exc, show_tracebacks)
    if messages or others:
        raise SetupError(*messages, *others)
    return data


def _probe_device(config: AuditConfig, problems: list[str]):
    """The audit's device, which the models are probed on (a forward pass that needs CUDA fails
    on a CPU), or None with the problem appended."""
    from ..training.device import resolve_device

    try:
        return resolve_device(config.device)
    except ConfigError as exc:
        problems.append(str(exc))
        return None


def class_setting_problems(config: AuditConfig, data) -> list[str]:
    """The classes the poisoning settings name, and those the attacks need, against the data's
    classes: checked now, not in the middle of a suite."""
    cfg, n = config.poisoning, data.n_classes
    settings = (("targeted_pair", list(cfg.targeted_pair), list(cfg.targeted_pair)),
                ("backdoor_target", cfg.backdoor_target, [cfg.backdoor_target]))
    problems = []
    for key, value, classes in settings:
        unknown = [c for c in classes if not 0 <= c < n]
        if unknown:
            problems.append(f"[tool.swiglu_audit.poisoning] {key} = {value}: class {', '.join(map(str, unknown))} "
                            f"does not exist; the dataset has classes 0 to {n - 1}")
    return problems + attack_class_problems(list(config.adversarial.attacks), n) + family_problems(config, data)


def family_problems(config: AuditConfig, data) -> list[str]:
    """The zoo's vision transformer cuts images into patches: on (N, D) data it cannot be built,
    which the plan's first timing probe met as an internal error (the standard profile lists it)."""
    if not config.include_builtin_zoo or data.modality != "tabular" or "vit" not in config.families:
        return []
    rest = [f for f in config.families if f != "vit"]
    return [f"[tool.swiglu_audit] families = {list(config.families)}: the 'vit' family needs image data (it cuts "
            f"images into patches), and this dataset is (N, D) tabular; set families = {rest or ['mlp']}"]


def attack_class_problems(attacks: list[str], n_classes: int) -> list[str]:
    """Attacks that cannot run on this few classes (the DLR losses read the third- or
    fourth-largest logit): found now, not as an ERROR of every adversarial finding after training.
    Binary data, with the base profile's attack set, meets this."""
    from ..methods.attack_registry import ATTACKS

    short = [a for a in attacks if a in ATTACKS and ATTACKS[a].min_classes > n_classes]
    if not short:
        return []
    needs = ", ".join(f"'{a}' needs {ATTACKS[a].min_classes}" for a in short)
    rest = [a for a in attacks if a not in short]
    return [f"[tool.swiglu_audit.adversarial] attacks: {needs} classes or more, and the dataset has {n_classes}; "
            f"leave {'it' if len(short) == 1 else 'them'} out (attacks = {rest})"]


def method_problems(config: AuditConfig) -> list[str]:
    """Attack and corruption names against their registries (the modules that implement them)."""
    from ..methods.attack_registry import ATTACKS
    from ..methods.corruptions import CORRUPTIONS

    problems = []
    for setting, names, known in (("[tool.swiglu_audit.adversarial] attacks", config.adversarial.attacks, ATTACKS),
                                  ("[tool.swiglu_audit.ood] corruptions", config.ood.corruptions, CORRUPTIONS)):
        unknown = [n for n in names if n not in known]
        if unknown:
            problems.append(f"{setting}: unknown {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return problems


def check_user_model(config: AuditConfig, model, data, device=None) -> None:
    """Build the model, load its weights if it has any, and run one probe batch through it on
    `device` (the CPU by default)."""
    import torch

    from ..errors import ModelContractError
    from ..training.specs import ModelSpec
    from ..training.zoo import call_factory, check_model_contract

    spec = ModelSpec(name=model.name, group="user", role=model.role, factory=model.factory,
                     weights=model.weights)
    torch.manual_seed(0)
    module = call_factory(spec, data)
    if model.weights:
        path = config.project_path(model.weights)
        problems = weights_problems(path, module.state_dict())
        if problems:
            raise ModelContractError(*[f"model '{model.name}': weights {path.name}: {p}" for p in problems])
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(path)))
    device = device or torch.device("cpu")
    try:
        module = module.to(device)
    except Exception as exc:  # noqa: BLE001  # a device error or out of memory: the model's problem, named
        raise ModelContractError(f"model '{model.name}' cannot be moved to the audit's device {device} "
                                 f"({type(exc).__name__}: {exc})") from exc
    check_model_contract(module, model.name, data, device, trained=bool(model.weights),
                         loaded_from=Path(model.weights).name if model.weights else None)


def weights_problems(path: Path, state: dict | None) -> list[str]:
    """A safetensors file against a model's state_dict (or, with None, only whether it can be
    read): [] when it fits, else one message naming the unreadable file or the missing,
    unexpected and misshapen tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        return [f"not a readable safetensors file ({exc}); save it with "
                "safetensors.torch.save_file(model.state_dict(), path)"]
    if state is None:
        return []
    expected = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} of the model's tensors ({_some(missing)})")
    if unexpected:
        parts.append(f"holds {len(unexpected)} tensor(s) the model does not have ({_some(unexpected)})")
    if misshapen:
        parts.append("has tensors of the wrong shape: " + ", ".join(
            f"{k} {list(shapes[k])} where the model has {list(expected[k])}" for k in misshapen[:3])
            + (f" and {len(misshapen) - 3} more" if len(misshapen) > 3 else ""))
    if not parts:
        return []
    # one file, one mistake: a single message
    return ["does not match the model: " + "; ".join(parts) + "; save it from this model's "
            "state_dict with safetensors.torch.save_file(model.state_dict(), path)"]


def _some(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _messages(exc: ContractError, show_tracebacks: bool) -> list[str]:
    problems = exc.problems
    cause = exc.__cause__
    if show_tracebacks and cause is not None:
        trace = "".join(traceback.format_exception(cause)).rstrip()
        problems = problems[:-1] + [f"{problems[-1]}\n{trace}"]
    return problems


def check_report_dir(report_dir: Path) -> None:
    """Fail now, not after an hour of training, if the reports cannot be written."""
    exc = _unwritable(report_dir)
    if exc is not None:
        raise ConfigError(f"report folder {report_dir} is not writable ({exc.strerror or exc}); "
                          f"pass {OPT_REPORT_DIR}=DIR or set report_dir in [tool.swiglu_audit]") from exc


def history_problems(config: AuditConfig) -> list[str]:
    """The history folder, which the session's end writes (`save`) or reads (`compare`): probed
    now, as the report folder is, not found unwritable after the whole audit."""
    folder = config.history_dir
    if config.save_run:
        exc = _unwritable(folder)
        if exc is not None:
            return [f"history folder {folder} is not writable ({exc.strerror or exc}); this audit is saved "
                    f"there when it ends (save = true or {OPT_SAVE}): fix the folder, or set history_dir in "
                    "[tool.swiglu_audit]"]
    elif config.compare_with and folder.exists() and not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
        return [f"history folder {folder} cannot be read (not a readable folder); this audit is compared with "
                f"runs saved there (compare or {OPT_COMPARE}): fix the folder, or set history_dir in "
                "[tool.swiglu_audit]"]
    return []


def _unwritable(folder: Path) -> OSError | None:
    """Why `folder` cannot be written (made where missing, then a file created in it and deleted),
    or None where it can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc
    return None


def check_shared_cache(config: AuditConfig) -> None:
    """Fail now if the cache's object store cannot be written (credentials, a missing bucket),
    not when the first model has trained: write a small object and delete it."""
    if not config.cache_url:
        return
    import uuid

    from ..training.shared_store import SharedStore

    probe = f"write-tests/{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        store = SharedStore(config.cache_url)
        store.note(probe, "a swiglu-audit write test; safe to delete")
        store.delete(probe)
    except Exception as exc:  # noqa: BLE001  every store has its own errors (botocore, google-auth)
        raise ConfigError(f"cache_dir {config.cache_url} cannot be written ({type(exc).__name__}: {exc}); check the "
                          "store's credentials (the usual AWS_*/GOOGLE_* settings) and that the bucket exists, or "
                          "use a folder shared by every worker") from exc
