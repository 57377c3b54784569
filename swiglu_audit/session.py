"""The per-process state of one audit: configuration, data, device, cache, zoo and memoised results.

One AuditSession lives per pytest process (each xdist worker has its own); the session-scoped
`audit` fixture creates it and keeps it on `config.stash`. Everything is created lazily so that
collection stays cheap. Usable from a notebook too: `AuditSession(build_config(profile="quick"))`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from . import __version__
from .config import AuditConfig
from .training.cache import CheckpointCache, cache_key
from .training.data import AuditData, load_audit_data
from .training.device import math_settings, precision_name, resolve_device
from .training.progress import Progress
from .training.zoo import Zoo
from .util.imports import model_source_digest
from .verdicts.stats import Statistics


class AuditSession:
    def __init__(self, config: AuditConfig, progress: Progress | None = None, workers: int = 1,
                 data: AuditData | None = None):
        """`workers`: processes of this audit sharing the machine's cores (pytest-xdist's count);
        `data`: the audit's data when already loaded for this configuration (else loaded on use)."""
        self.config = config
        self.progress = progress or Progress()
        self.device = resolve_device(config.device)
        _share_cores_with_other_workers(workers)
        self.cache = CheckpointCache(config.cache_dir, shared=config.cache_url)
        self._data: AuditData | None = data
        self._zoo: Zoo | None = None
        self._memo: dict[Any, Any] = {}
        policy, settings = config.policy, config.statistics
        self.statistics = Statistics(policy["confidence_level"], policy["alpha"], settings.bootstrap, settings.seed)
        self.started = time.monotonic()  # the time budget of seeds = "auto" counts from here
        self._wider: dict[int, AuditSession] = {}

    def at_look(self, n_seeds: int, level: float) -> AuditSession:
        """This session as one look of a sequential comparison (seeds = "auto"): the first
        `n_seeds` seeds of each architecture (the configured ones, then the next free seed
        numbers), intervals at `level`. Trained models and measurements are shared with every
        other view of the same seeds; models of the extra seeds are trained (or read from the
        cache) on first use."""
        if n_seeds == len(self.config.seeds):
            base = self
        else:
            if n_seeds not in self._wider:
                seeds = extended_seeds(self.config.seeds, n_seeds)
                self._wider[n_seeds] = self.with_config(dataclasses.replace(self.config, seeds=seeds))
            base = self._wider[n_seeds]
        view = copy.copy(base)  # shares data, zoo, cache and memo: only the statistics differ
        view.statistics = dataclasses.replace(base.statistics, level=level, alpha=1 - level)
        return view

    def with_config(self, config: AuditConfig) -> AuditSession:
        """A session for another configuration of the same dataset (the plan's alternatives):
        the data already loaded is shared, not loaded again."""
        other = AuditSession(config, self.progress)
        if (config.dataset, config.live) == (self.config.dataset, self.config.live):
            other._data = self._data
        return other

    @property
    def data(self) -> AuditData:
        if self._data is None:
            self._data = load_audit_data(self.config.dataset, self.config.cache_dir, self.config.live,
                                         self.config.fairness.group_feature)
        return self._data

    @property
    def zoo(self) -> Zoo:
        if self._zoo is None:
            self._zoo = Zoo(self.config, self.data, self.device, self.cache, self.progress)
        return self._zoo

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Compute once per process: a comparison reuses the per-model results of its two models."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def forget_results(self) -> None:
        """Drop the models and measurements held in memory (they stay in the cache): a worker
        that runs one job after another keeps its data, not every job's models."""
        self._memo.clear()
        if self._zoo is not None:
            self._zoo.forget()

    def cached_arrays(self, kind: str, models, settings: dict, code: str, compute) -> tuple[dict, dict]:
        """A measurement of these trained models, cached on disk like attack results (xdist workers
        and later runs share it): keyed by the weights, the settings, the data, the device and a
        digest of the code that computes it, and of a user's model code (its forward pass may change
        where its parameters' shapes, which its weights' key reads, do not). `compute` returns
        (flat name -> array, JSON record)."""
        key = cache_key({"kind": kind, "models": [m.key for m in models], "settings": settings,
                         "data": self.data.fingerprint, "device": self.device.type, "code": code,
                         **self.model_code(models)})
        return self.cache.get_or_create_arrays(key, compute)

    def cached_record(self, kind: str, models, settings: dict, code: str, compute) -> dict:
        """`cached_arrays` of a measurement that is a JSON record alone (`compute` returns it): the
        data checks, the op checks, timings and the determinism check. The record comes back as
        a load from the cache returns it on a hit; on a miss, as `compute` made it."""
        return self.cached_arrays(kind, models, settings, code, lambda: ({}, compute()))[1]

    def model_code(self, models) -> dict:
        """{"factories": digests of the source of these models' user factories, ...} for a cached
        measurement's key, {} for the zoo's own models (their code is in the measurement's digest)."""
        factories = sorted({model_source_digest(m.module, self.zoo.spec(m.name).factory) or ""
                            for m in models if self.zoo.spec(m.name).factory})
        # results of users' models are keyed anew since the attacks judge in eval mode: before,
        # torchattacks left a model in train mode after each attack, which overwrote a BatchNorm
        # model's running statistics in memory, and the suites measured after it in that process
        # cached results of the overwritten model under the same keys
        return {"factories": factories, "measured_in_eval_mode": True} if factories else {}

    def keep_replicates(self) -> None:
        """Keep the statistics' bootstrap replicates in this audit's cache (methods.replicate_store),
        so a warm audit reads them instead of resampling. A cache that cannot keep them (a
        read-only folder, an unreachable store) costs the resampling, never the check."""
        from .errors import CacheError
        from .methods import replicate_store

        # this machine's folder only: a round trip to a shared store costs more than resampling
        local = CheckpointCache(self.cache.root, secret=self.cache.secret)

        def store(key: str, compute):
            try:
                return local.get_or_create_arrays(key, lambda: (compute(), {}))[0]
            except (CacheError, OSError):
                return compute()
        replicate_store.install(store)

    def machine_today(self) -> dict:
        """What a measurement of the machine rather than of the weights (timings, run-to-run
        determinism) holds for, as part of its cache key: this host, its cores and threads, the
        device and torch, today (UTC). A warm audit re-judges today's measurement; tomorrow, or on
        another machine, it is measured again."""
        return {"host": platform.node(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                "device": str(self.device), "torch": torch.__version__,
                "day": time.strftime("%Y-%m-%d", time.gmtime())}

    def train_features(self, model):
        """(N, D) penultimate features of the training split through one trained model, computed
        once per process: the OOD feature detectors and the poison scan read the same features."""
        from .training.features import penultimate_features

        return self.memo(("train-features", model.key),
                         lambda: penultimate_features(model.module, self.data.x_train, self.device).numpy())

    def meta(self) -> dict:
        """Reproducibility facts of this process, JSON-safe, merged across workers by the plugin."""
        models = {}
        if self._zoo is not None:
            for (name, tag), trained in self._zoo.trained_runs():
                entry = models.setdefault(name, {"spec": self._zoo.spec(name).to_dict(), "runs": {}})
                entry["n_parameters"] = trained[0].n_parameters
                entry["runs"][tag] = [{
                    "seed": t.seed, "cached": t.cached,
                    "train_seconds": t.record.get("seconds"),
                    "curve_eval_seconds": t.record.get("eval_seconds"),  # validation passes of the learning curve
                    "final_val_accuracy": (t.record.get("history") or [{}])[-1].get("val_accuracy"),
                } for t in trained]
        return {
            "versions": {
                "swiglu_audit": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                "platform": platform.platform(),
                **dict(_package_versions(("torchattacks", "scikit-learn", "numpy", "pandas", "safetensors"))),
            },
            "device": {"type": self.device.type, "precision": precision_name(self.device),
                       "name": torch.cuda.get_device_name(0) if self.device.type == "cuda" else platform.processor() or platform.machine(),
                       "torch_threads": torch.get_num_threads(), "math": math_settings(self.device)},
            "data": self._data.summary() if self._data is not None else None,
            "cache": {"dir": str(self.config.cache_dir), "url": self.config.cache_url, **self.cache.stats.to_dict()},
            "recipe": self.config.training.to_dict(),
            "models": models,
        }


def extended_seeds(seeds: tuple[int, ...], n: int) -> tuple[int, ...]:
    """The configured seeds, then the smallest unused seed numbers, `n` in all."""
    out = list(seeds[:n])
    candidate = 0
    while len(out) < n:
        if candidate not in out:
            out.append(candidate)
        candidate += 1
    return tuple(out)


def _share_cores_with_other_workers(workers: int) -> None:
    """Under pytest-xdist, split the CPU threads between workers instead of oversubscribing."""
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@functools.cache
def _package_versions(names: tuple[str, ...]) -> dict:
    """Read once per process: meta() runs for every check, and importlib.metadata is slow."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
