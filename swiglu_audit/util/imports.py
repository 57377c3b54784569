"""Resolve `package.module:callable` import paths with errors that name the setting."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any


def load_callable(import_path: str, setting: str, error: type[Exception]) -> Callable:
    module_name, _, attr = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing the module
        raise error(f"{setting} = '{import_path}': cannot import module '{module_name}' "
                    f"({type(exc).__name__}: {exc}); check the spelling and that the module is "
                    "importable from the folder pytest runs in") from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise error(f"{setting} = '{import_path}': module '{module_name}' has no attribute "
                        f"'{attr}'; name a function or class defined there")
        target = getattr(target, part)
    if not callable(target):
        raise error(f"{setting} = '{import_path}': '{attr}' is not callable")
    return target


def source_digest(import_path: str | None) -> str | None:
    """sha256 of the source file of the module of `package.module:callable` (None when there is
    no such path or its file cannot be read): what a cached measurement of a user's model keys
    on, since the model's parameter shapes do not change when its forward pass does."""
    if not import_path:
        return None
    import hashlib
    import inspect

    try:
        path = inspect.getsourcefile(importlib.import_module(import_path.partition(":")[0]))
        return hashlib.sha256(open(path, "rb").read()).hexdigest() if path else None
    except Exception:  # noqa: BLE001  an unimportable module is the setup check's to report
        return None


def model_source_digest(model: Any, factory: str | None) -> str | None:
    """sha256 over the source of a user's model: the factory's module and every module that
    defines a class among the model's submodules (torch's own left out: its version is keyed
    apart). A forward pass edited in a file the factory imports changes no parameter shape, so
    the factory's file and the parameter shapes alone let old checkpoints and results stand.
    None for the zoo's models (no factory: their code is the harness's). Files are read once per
    process and set of modules: every cache key of a user's model asks for it."""
    if not factory:
        return None
    names = {factory.partition(":")[0]} | {type(m).__module__ for m in model.modules()}
    return _modules_digest(tuple(sorted(n for n in names if n and n != "torch" and not n.startswith("torch."))))


@functools.cache
def _modules_digest(names: tuple[str, ...]) -> str:
    import hashlib
    import inspect
    import sys

    digest = hashlib.sha256()
    for name in names:
        try:
            path = inspect.getsourcefile(sys.modules.get(name) or importlib.import_module(name))
            digest.update(name.encode() + b"\0" + (open(path, "rb").read() if path else b""))
        except Exception:  # noqa: BLE001  a module without a readable source is keyed by its name
            digest.update(name.encode())
    return digest.hexdigest()
