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
import os
import platform
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from ..config import OPT_SHARD, AuditConfig
from ..util.imports import source_digest
from ..util.io import atomic_write_text

MARKER_FOLDER = "completed-audits"


# Settings read from the environment that change what an audit computes
_ENVIRONMENT = ("SWIGLU_AUDIT_STACK", "SWIGLU_AUDIT_PROBE_SECONDS", "SWIGLU_AUDIT_CACHE_KEY", "SWIGLU_AUDIT_DEVICE_MEMORY")


def _files_digest(roots: list[Path]) -> str:
    """sha256 of every source and data file under `roots` (the package, the suites, the zoo's
    specs) and of the versions of what computes."""
    h = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in Path(root).rglob("*") if p.suffix in (".py", ".toml", ".json") and p.is_file()):
            h.update(path.as_posix().encode())
            h.update(path.read_bytes())
    for name in ("torch", "numpy", "sklearn", "torchattacks"):
        module = sys.modules.get(name)
        h.update(f"{name} {getattr(module, '__version__', None)}".encode())
    return h.hexdigest()


def _user_code(audit_config: AuditConfig) -> list:
    """The source of the user's model factories and the content of their weights files, which
    the package's digest does not see."""
    out: list = []
    for spec in audit_config.user_models:
        weights = audit_config.project_path(spec.weights) if spec.weights else None
        out.append([spec.name, source_digest(spec.factory),
                    hashlib.sha256(weights.read_bytes()).hexdigest() if weights and weights.is_file() else None])
    return out


SELECTING_OPTIONS = ("keyword", "markexpr", "deselect", "lf", "failedfirst", OPT_SHARD)


def narrowed_by(config: pytest.Config, suites_folder: str, beyond_shard: bool = False) -> str:
    """Why this run checks a part of the audit on purpose ("" when it runs it whole): checks that
    pytest deselected (-k, -m, --deselect, --lf, the shard; counted as they were, so an option that
    leaves every check in, such as `-m "not slow"` in addopts, narrows nothing), or paths or ids
    inside the suites named on the command line. The gates then list the findings it lacks
    without tripping on them (scheduled/regressions.py), and it is no baseline by itself.
    `beyond_shard`: what narrows it besides its shard (`merge` keeps that as the merged `partial`)."""
    from .relay import DESELECTED_KEY, SHARD_DESELECTED_KEY

    chosen = []
    deselected = config.stash.get(DESELECTED_KEY, 0)
    if beyond_shard:
        deselected -= config.stash.get(SHARD_DESELECTED_KEY, 0)
    if deselected > 0:
        given = [f"{name}={value}" for name in SELECTING_OPTIONS if (value := config.getoption(name, None))
                 and not (beyond_shard and name == OPT_SHARD)]
        chosen.append(f"{deselected} check(s) deselected" + (f" by {', '.join(given)}" if given else ""))
    # --lf drops the passing checks and files while it collects, mostly without pytest_deselected
    last_failed = config.pluginmanager.get_plugin("lfplugin")
    if config.getoption("lf", False) and getattr(last_failed, "lastfailed", None):
        chosen.append("--lf: the checks that failed last time")
    suites = Path(suites_folder).resolve()

    def inside(text) -> bool:  # a path into the suites; the suites' folder itself runs every check
        path = Path(str(text).split("::")[0]).resolve()
        return path != suites and path.is_relative_to(suites)

    ignored = [str(p) for p in (config.getoption("ignore", None) or []) + (config.getoption("ignore_glob", None) or [])
               if inside(p)]
    if ignored:
        chosen.append("ignored " + " ".join(ignored))
    if config.args_source == pytest.Config.ArgsSource.ARGS:  # the plugin adds the suites' folder where none is named
        named = [a for a in map(str, config.args) if inside(a)]
        if named:
            chosen.append("paths or ids " + " ".join(named))
    return ("this run checks a part of the audit (" + "; ".join(chosen)
            + "); compare the whole audit, or the merged shards, to gate every finding") if chosen else ""


def audit_fingerprint(config: pytest.Config, audit_config: AuditConfig, data, suites: Path) -> str:
    """A digest of what an audit's results depend on: its settings (not where reports go), the
    package's code, the suites and the zoo's specs, the user's model code and weights, the data
    (live data and named groups included), the settings read from the environment, and which
    checks run (the paths or ids given, -k, -m, --deselect, the shard). Call it before the plugin
    adds the suites to `config.args`."""
    settings = {k: v for k, v in audit_config.to_dict().items() if k != "report_dir"}
    options = SELECTING_OPTIONS
    # paths named on the command line select checks; without any, pytest's default (the folder it
    # runs in) selects every check wherever the project lives
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    selection = {"args": [str(a) for a in config.args] if given else [],
                 "options": [str(config.getoption(name, None)) for name in options]}
    package = Path(__file__).resolve().parents[1]
    specs = Path(str(resources.files("swiglu_audit.zoo_specs")))  # the zoo's models/ (outside the package when editable)
    # what is measured per machine and day (timings, the determinism check) is measured again on
    # another host or the next day: that first run starts its workers, as a cold one does
    machine_day = [platform.node(), os.cpu_count(), time.strftime("%Y-%m-%d", time.gmtime())]
    fields = {"settings": settings, "cache_url": audit_config.cache_url, "machine_day": machine_day,
              "code": _files_digest([package, suites, specs]), "user_code": _user_code(audit_config),
              "data": [data.fingerprint, data.live_hash, None if data.groups_test is None else
                       hashlib.sha256(data.groups_test.astype(str).tobytes()).hexdigest()],
              "environment": {name: os.environ.get(name) for name in _ENVIRONMENT}, "selection": selection}
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
