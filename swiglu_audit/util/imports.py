"""Resolve `package.module:callable` import paths with errors that name the setting."""

from __future__ import annotations

import importlib
from collections.abc import Callable


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
