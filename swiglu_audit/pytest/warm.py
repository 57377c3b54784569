"""A warm audit runs in one process: when this cache holds a completed audit of exactly this
configuration, code, data and selection, its checks only read and judge, and starting pytest-xdist
workers (each importing torch and scikit-learn, loading the data and collecting the suites again)
costs more than the work they would share.

The controller leaves a marker in the cache folder when an audit completes with no check in ERROR;
its name is a digest of everything the audit's results depend on. A marker whose entries were
since evicted only makes the run slower (the missing work runs in this one process), never
different: where the checks run does not change what they find. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest

from ..config import AuditConfig
from ..util.io import atomic_write_text

MARKER_FOLDER = "completed-audits"


def _package_digest() -> str:
    """sha256 of the package's source (the suites included) and of the versions of what computes."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    for name in ("torch", "numpy", "sklearn", "torchattacks"):
        module = sys.modules.get(name)
        h.update(f"{name} {getattr(module, '__version__', None)}".encode())
    return h.hexdigest()


def audit_fingerprint(config: pytest.Config, audit_config: AuditConfig, data_fingerprint: str) -> str:
    """A digest of what an audit's results depend on: its settings (not where reports go), the
    package's code, the data, and which checks run (arguments, -k, -m, shard)."""
    settings = {k: v for k, v in audit_config.to_dict().items() if k != "report_dir"}
    selection = {"args": [str(a) for a in config.invocation_params.args],
                 "keywords": [config.getoption("keyword", ""), config.getoption("markexpr", "")]}
    fields = {"settings": settings, "code": _package_digest(), "data": data_fingerprint, "selection": selection}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _marker(cache_dir: Path, fingerprint: str) -> Path:
    return Path(cache_dir) / MARKER_FOLDER / f"{fingerprint}.json"


def completed_here(cache_dir: Path, fingerprint: str) -> bool:
    return _marker(cache_dir, fingerprint).is_file()


def mark_completed(cache_dir: Path, fingerprint: str, findings: int) -> None:
    """Record that the audit `fingerprint` completed with its results in this cache. A folder that
    cannot be written only costs the next warm run its single-process start."""
    path = _marker(cache_dir, fingerprint)
    text = json.dumps({"completed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "findings": findings})
    try:
        atomic_write_text(path, text)
    except OSError:
        pass


def run_in_this_process(config: pytest.Config) -> None:
    """Turn pytest-xdist's distribution off for this run. Called from this plugin's
    pytest_configure, which runs before xdist's (trylast) creates its distributed session."""
    config.option.numprocesses = 0
    config.option.dist = "no"
    config.option.tx = []
