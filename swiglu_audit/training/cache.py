"""Checkpoint cache: safetensors files, content-addressed, locked, self-healing.

An entry's key is a sha256 over everything that determines the trained weights (model spec, data
fingerprint, seed, recipe, harness version). The file is written to a temporary name and renamed
into place, so a reader never sees half a file; a file lock around "load or train, then store"
means two concurrent runs (pytest-xdist workers, two CI jobs) train an entry once. Each file
carries in its metadata a sha256 of everything a load returns (its tensors and its JSON record):
a truncated or altered file is detected, reported with a warning, deleted and retrained. Loading
never unpickles anything.

With a shared store (`cache_dir` an object-store URL, `training.shared_store`), the local folder
is this machine's copy: an entry missing here is fetched from the store, checked the same way, and
an entry computed here is published there, under a lease so that two audits compute it once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CacheError, SwigluAuditWarning
from ..util.io import atomic_write, safetensors_metadata
from .shared_store import SharedStore

LOCK_TIMEOUT_S = 3600  # a training run holding the lock longer than this is presumed dead


# The layout of an entry's metadata, stored in it. 2: the checksum and the signature cover the
# format and the record as well as the tensors; 1 (no "format" field): the tensors only, so an
# entry of format 1 cannot be checked and is redone.
FORMAT = "2"


def fields_digest(fields: dict) -> str:
    """sha256 of a JSON-able description: for names that must stay as they are across cache
    formats (a committed golden file's folder)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(fields: dict) -> str:
    """The key of an entry: a digest of what determines it, and of the entry format (an older
    version, which checks entries another way, then never reads, nor deletes, this version's
    entries in a cache they share)."""
    return fields_digest({**fields, "cache_format": FORMAT})


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()




def _canonical(value) -> str:
    """One serialisation per JSON value: what is checked is the record a load returns, however its
    text was written."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def entry_digest(tensors: dict[str, torch.Tensor], record: dict) -> str:
    """sha256 of all an entry returns or is trusted for: its format, tensors and record. The
    record matters as much as the weights: some results (the backdoor scan's flagged samples, the
    determinism check) live in it alone."""
    covered = {"format": FORMAT, "tensors": tensors_digest(tensors), "record": record}
    return hashlib.sha256(_canonical(covered).encode()).hexdigest()


def code_digest(*modules) -> str:
    """sha256 of the source files of `modules` and of the torch version: cached measurements must
    be invalidated by a change to the code that computes them, not only by a version bump. Call it
    at import time, so that it describes the code the process runs."""
    h = hashlib.sha256()
    for module in modules:
        h.update(Path(module.__file__).read_bytes())
    h.update(f"torch {torch.__version__}".encode())
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0  # checkpoints loaded
    misses: int = 0  # checkpoints trained
    result_hits: int = 0  # expensive measurements (attack results) loaded
    result_misses: int = 0  # expensive measurements computed
    healed: list[str] = field(default_factory=list)  # keys of corrupted entries that were redone
    fetched: int = 0  # entries (of any kind) copied from the shared store; counted in the hits too

    def to_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "result_hits": self.result_hits,
                "result_misses": self.result_misses, "healed": list(self.healed), "fetched": self.fetched}


# A secret (for example a CI secret of the scheduled audit) that signs every entry this project's
# own runs write. When it is set, an entry without a valid signature is not trusted: the
# self-checksum only guards against damage, since whoever plants an entry can recompute it.
CACHE_KEY_ENV = "SWIGLU_AUDIT_CACHE_KEY"


def _signature(secret: str, key: str, digest: str) -> str:
    """digest: the entry's `entry_digest`, so the signature covers its record too."""
    return hmac.new(secret.encode(), f"{key}:{digest}".encode(), hashlib.sha256).hexdigest()


class _OtherFormat(ValueError):
    """An entry written by another version of this package: redone, and not called corrupted."""


class _Untrusted(ValueError):
    """A sound entry without this project's signature: in a shared store, left for the entry computed
    here to replace (a machine with another key may trust it)."""


class CheckpointCache:
    def __init__(self, root: Path, secret: str | None = None, shared: SharedStore | str | None = None):
        """root: the local folder; shared: an object-store URL (or store) whose entries every
        worker and audit share, the local folder then being this machine's copy of them."""
        self.root = Path(root)
        self.stats = CacheStats()
        self.secret = secret if secret is not None else os.environ.get(CACHE_KEY_ENV) or None
        self.shared = SharedStore(shared) if isinstance(shared, str) else shared

    def _relative(self, key: str, kind: str) -> str:
        return self.path_for(key, kind).relative_to(self.root).as_posix()

    def contains(self, key: str, kind: str = "checkpoint") -> bool:
        """The entry is here or in the shared store (not checked: loading checks it). The store is
        asked through a listing kept for a few seconds (`SharedStore.names`)."""
        return self.path_for(key, kind).exists() or (
            self.shared is not None and self._relative(key, kind) in self.shared.names())

    def path_for(self, key: str, kind: str = "checkpoint") -> Path:
        """kind: "checkpoint" (trained weights), "result" (measurements of them), "probe" (the
        plan's unit costs, timed on this machine)."""
        folder = {"checkpoint": self.root, "result": self.root / "results", "probe": self.root / "probes"}[kind]
        return folder / key[:2] / f"{key}.safetensors"

    def record(self, key: str, kind: str = "checkpoint") -> dict | None:
        """The JSON record of a local entry, read from its header alone (neither it nor the tensors
        are checked; `get_or_create` checks them), or None when absent, unreadable or of another
        format (which `get_or_create` redoes)."""
        path = self.path_for(key, kind)
        try:
            meta = safetensors_metadata(path)
            record = json.loads(meta.get("record", "{}"))
        except (OSError, ValueError, TypeError, UnicodeDecodeError):  # absent or damaged: get_or_create heals it
            return None
        return record if isinstance(record, dict) and meta.get("format") == FORMAT else None

    def get_or_create(self, key: str, create: Callable[[], tuple[dict[str, torch.Tensor], dict]],
                      kind: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict, bool]:
        """Return (tensors, record, was_cached). `create` computes and returns (tensors, record).

        kind "checkpoint": trained weights; kind "result": a measurement that is a pure function
        of cached weights, data and code (attack results), so workers and later runs share it.
        """
        path = self.path_for(key, kind)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"checkpoint cache folder {self.root} cannot be created ({exc}); set "
                             "--swiglu-audit-cache-dir or cache_dir to a writable folder") from exc
        lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                hit, miss = ("hits", "misses") if kind == "checkpoint" else ("result_hits", "result_misses")
                loaded = self._load(path, key)
                if loaded is None and self.shared is not None:
                    loaded = self._load_shared(path, key, kind)
                if loaded is not None:
                    setattr(self.stats, hit, getattr(self.stats, hit) + 1)
                    return (*loaded, True)
                if self.shared is None:
                    state, record = create()
                    self._store(path, state, record)
                else:
                    relative = self._relative(key, kind)
                    shared = self.shared
                    with shared.lease(relative, published=lambda: shared.exists(relative)) as held:
                        if held is None:  # another audit computed it while this one waited
                            loaded = self._load_shared(path, key, kind)
                            if loaded is not None:
                                setattr(self.stats, hit, getattr(self.stats, hit) + 1)
                                return (*loaded, True)
                        # held (or the published entry failed its checks): compute and publish
                        state, record = create()
                        if held is not None and held.lost.is_set() and shared.exists(relative):
                            # another audit judged this one dead, broke its lease and published
                            # first: every machine keeps that one copy
                            loaded = self._load_shared(path, key, kind)
                            if loaded is not None:
                                setattr(self.stats, hit, getattr(self.stats, hit) + 1)
                                return (*loaded, True)
                        self._store(path, state, record)
                        shared.publish(path, relative)
                setattr(self.stats, miss, getattr(self.stats, miss) + 1)
                return state, record, False
        except Timeout as exc:
            raise CacheError(f"waited {LOCK_TIMEOUT_S}s for the lock on {path}; if no other audit "
                             f"is running, delete {path}.lock") from exc

    def get_or_create_arrays(self, key: str, create: Callable[[], tuple[dict, dict]],
                             kind: str = "result") -> tuple[dict, dict]:
        """A cached measurement made of numpy arrays: `create` returns (name -> array, record)."""
        def create_tensors():
            arrays, record = create()
            # ascontiguousarray makes a 0-d array 1-d: the reshape keeps a scalar a scalar
            return {k: torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v))) for k, v in arrays.items()}, record

        tensors, record, _ = self.get_or_create(key, create_tensors, kind=kind)
        return {k: v.numpy() for k, v in tensors.items()}, record

    def _load_shared(self, path: Path, key: str, kind: str):
        """Fetch the entry from the shared store into the local copy and load it as a local file.
        A damaged object (or one of another format) is deleted from the store too, so nobody reads
        it again; an unsigned (or otherwise signed) one is left for the computed entry to replace,
        since a machine with another key must not delete entries its own audits trust."""
        assert self.shared is not None
        relative = self._relative(key, kind)
        if not self.shared.fetch(relative, path):
            return None
        failures: list[str] = []
        loaded = self._load(path, key, failures)
        if loaded is None and failures != ["untrusted"]:
            self.shared.delete(relative)
        elif loaded is not None:
            self.stats.fetched += 1
        return loaded

    def _load(self, path: Path, key: str, failures: list[str] | None = None):
        """(tensors, record) of the entry at `path`, or None when it is absent or fails its checks
        (then deleted, with a warning; `failures` gets "damaged", "untrusted" or "other format")."""
        if not path.exists():
            return None
        try:
            return self._checked(path, key)
        except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
            if failures is not None:
                failures.append({_OtherFormat: "other format", _Untrusted: "untrusted"}.get(type(exc), "damaged"))
            what = str(exc) if isinstance(exc, _OtherFormat) else f"is corrupted or untrusted ({exc})"
            warnings.warn(SwigluAuditWarning(
                f"checkpoint cache entry {path.name} {what}; it was deleted and "
                + ("the model is retrained" if path.parent.parent == self.root else "it is measured again")),
                stacklevel=2)
            self.stats.healed.append(key)
            path.unlink(missing_ok=True)
            return None

    def _checked(self, path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Read the entry and check all it returns (the record as well as the tensors: some results
        live in the record alone); raises when a check fails."""
        state = load_file(str(path))
        meta = safetensors_metadata(path)  # the header holds our metadata
        if meta.get("format") != FORMAT:
            raise _OtherFormat(f"was written by another version of swiglu-audit (cache format "
                               f"{meta.get('format', '1')}; this version checks format {FORMAT} only)")
        record = json.loads(meta.get("record", "null"))
        if not isinstance(record, dict):
            raise ValueError("its record is not a JSON object")
        digest = entry_digest(state, record)
        if meta.get("sha256") != digest:
            raise ValueError("checksum mismatch (tensors or record)")
        signature = meta.get("signature", "").encode()  # bytes: compare_digest refuses non-ASCII text
        if self.secret and not hmac.compare_digest(signature, _signature(self.secret, key, digest).encode()):
            raise _Untrusted(f"not signed with this project's {CACHE_KEY_ENV}: it may have been planted, "
                             "so it is not trusted")
        return state, record

    def _store(self, path: Path, state: dict[str, torch.Tensor], record: dict) -> None:
        if not isinstance(record, dict):  # a load would refuse it, and redo the entry on every run
            raise TypeError(f"a cache entry's record must be a dict, not {type(record).__name__}")
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}  # unshare tied weights
        stored = json.loads(json.dumps(record))  # the record as a load will return it (tuples as lists...)
        meta = {"format": FORMAT, "sha256": entry_digest(state, stored), "record": _canonical(stored)}
        if self.secret:
            meta["signature"] = _signature(self.secret, path.stem, meta["sha256"])
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), suffix=".safetensors")
