"""Checks made once at start-up, so a broken setting stops the session before any training."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import OPT_REPORT_DIR, AuditConfig
from .errors import ConfigError
from .imports import load_callable


def check_import_paths(config: AuditConfig) -> None:
    if config.dataset:
        load_callable(config.dataset, "[tool.swiglu_audit] dataset", ConfigError)
    for model in config.user_models:
        load_callable(model.factory, f"[[tool.swiglu_audit.models]] '{model.name}' factory", ConfigError)
        if model.weights:
            path = Path(model.weights).expanduser()
            path = path if path.is_absolute() else config.project_root / path
            if not path.is_file():
                raise ConfigError(f"[[tool.swiglu_audit.models]] '{model.name}' weights = "
                                  f"'{model.weights}': no such file ({path})")
            if path.suffix != ".safetensors":
                raise ConfigError(f"[[tool.swiglu_audit.models]] '{model.name}' weights must be a "
                                  ".safetensors file (pickled checkpoints are not loaded); convert "
                                  "it with safetensors.torch.save_file(model.state_dict(), path)")


def check_report_dir(report_dir: Path) -> None:
    """Fail now, not after an hour of training, if the reports cannot be written."""
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=report_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"report folder {report_dir} is not writable ({exc.strerror or exc}); "
                          f"pass {OPT_REPORT_DIR}=DIR or set report_dir in [tool.swiglu_audit]") from exc
