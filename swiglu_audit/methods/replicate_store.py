"""Bootstrap replicates, computed once for the same inputs: in this process, and across audits
when the audit installs its cache as the store.

The replicates of a statistic (thousands of resamples of the examples) are a pure function of the
scores resampled, the resampling seed and count, numpy's generator and the code that computes
them. A warm audit (everything cached) would otherwise spend most of its time resampling again
scores it read from the cache; it reads the replicates instead. Only the resampling is kept: the
interval, the level it is read at and the verdict are computed again from them on every run, so
a changed confidence level or tolerance is judged afresh.

The key holds a digest of every input array's bytes, shape and dtype, the other arguments, the
source of the modules that compute replicates and numpy's version; entries are written and checked
by the audit's checkpoint cache (checksummed, signed with `SWIGLU_AUDIT_CACHE_KEY` when set).
Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]
# The audit's store: (key, compute) -> arrays, computing and keeping them where absent.
Store = Callable[[str, Callable[[], Arrays]], Arrays]

_MEMORY: dict[str, Arrays] = {}  # this process's replicates, whether or not a store is installed
_MEMORY_LIMIT = 512  # a long-lived notebook session: keep memory bounded
_store: Store | None = None


def install(store: Store | None) -> None:
    """Keep replicates in `store` (the audit's cache) as well as in memory; None: memory only."""
    global _store
    _store = store


def _code_digest() -> str:
    """The source of the modules whose functions compute what is kept: a change to any of them
    computes every entry again (they share `ood_metrics.weighted_auroc`; the fairness floors are
    `verdicts.stats.share_floor`'s)."""
    here = Path(__file__).parent
    h = hashlib.sha256(f"numpy {np.__version__}".encode())
    for name in ("replicate_store", "ood_metrics", "calibration", "privacy", "fairness"):
        h.update((here / f"{name}.py").read_bytes())
    h.update((here.parent / "verdicts" / "stats.py").read_bytes())
    return h.hexdigest()


_CODE = _code_digest()  # at import: the code this process runs


def key_of(name: str, arrays: dict[str, np.ndarray], params: dict) -> str:
    h = hashlib.sha256(json.dumps({"name": name, "params": params, "code": _CODE}, sort_keys=True).encode())
    for label in sorted(arrays):
        a = np.ascontiguousarray(arrays[label])
        h.update(f"{label}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def replicates(name: str, arrays: dict[str, np.ndarray], params: dict, compute: Callable[[], Arrays]) -> Arrays:
    """`compute()` (a dict of arrays) for these inputs, once: from memory, the installed store, or
    computed. `arrays` and `params` (JSON-able) must be everything `compute` reads."""
    key = key_of(name, arrays, params)
    if key not in _MEMORY:
        if len(_MEMORY) >= _MEMORY_LIMIT:
            _MEMORY.clear()
        _MEMORY[key] = compute() if _store is None else _store(key, compute)
    return _MEMORY[key]
