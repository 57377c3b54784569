"""The checkpoint cache on an object store (`s3://`, `gs://`, any fsspec URL): entries every worker
and every audit can reach, with the local cache folder as this machine's copy of them.

Why an object store needs its own rules:
- An object is written by one PUT and appears whole or not at all, so an entry is published by
  writing its final name once; no temporary name and rename (which object stores lack).
- Two audits must train an entry once. A file lock cannot span machines, so the right to compute
  an entry is a *lease*: a small object created only if absent (S3 `If-None-Match: *`, GCS
  `ifGenerationMatch=0`, through fsspec's `pipe_file(..., mode="create")`). Its holder renews it
  while it works; a lease not renewed for `stale_seconds` belongs to a dead process and is broken.
- Whatever is read back is checked by the cache exactly as a local file is (checksum, signature),
  and a damaged or untrusted object is deleted, so the next reader recomputes it.

Torch-free: it moves bytes; `training.cache` decides what they mean.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CacheError, SwigluAuditWarning
from ..util.io import atomic_write

RENEW_SECONDS = 15.0  # how often a lease's holder says it is alive
STALE_SECONDS = 120.0  # a lease not renewed for this long is a dead holder's; a retried job waits at most this
POLL_SECONDS = 2.0  # how often a waiting audit looks for the entry (each look is a request)
WAIT_SECONDS = 3 * 3600  # a wait this long, with the lease renewed throughout, is reported, not endured

class SharedStore:
    """Entries under one fsspec URL, addressed by their path relative to the cache's root."""

    def __init__(self, url: str, *, stale_seconds: float = STALE_SECONDS, renew_seconds: float = RENEW_SECONDS,
                 poll_seconds: float = POLL_SECONDS, wait_seconds: float = WAIT_SECONDS,
                 filesystem: Any = None):
        import fsspec

        self.url = url.rstrip("/")
        if filesystem is None:
            filesystem, root = fsspec.core.url_to_fs(self.url)
        else:  # a filesystem object given directly (tests, or options fsspec's URL cannot carry)
            root = filesystem._strip_protocol(self.url)
        self.fs, self.root = filesystem, str(root).rstrip("/")
        self.stale_seconds, self.renew_seconds = stale_seconds, renew_seconds
        self.poll_seconds, self.wait_seconds = poll_seconds, wait_seconds
        self._warned = False  # the warning about a store without exclusive create, once

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self._path(relative)))

    def fetch(self, relative: str, local: Path) -> bool:
        """Copy the entry to `local` (atomically); False when the store does not hold it."""
        try:
            data = self.fs.cat_file(self._path(relative))
        except FileNotFoundError:
            return False
        atomic_write(local, lambda tmp: Path(tmp).write_bytes(data), suffix=local.suffix)
        return True

    def publish(self, local: Path, relative: str) -> None:
        """Store the file `local` as the entry: one PUT, so readers see all of it or nothing."""
        self.fs.pipe_file(self._path(relative), Path(local).read_bytes())

    def delete(self, relative: str) -> None:
        try:
            self.fs.rm_file(self._path(relative))
        except FileNotFoundError:
            pass

    def note(self, relative: str, text: str) -> None:
        """Write a small object that names who wrote it (each under its own name: objects cannot
        be appended to)."""
        self.fs.pipe_file(self._path(relative), text.encode())

    def remove_folder(self, relative: str) -> None:
        try:
            self.fs.rm(self._path(relative), recursive=True)
        except FileNotFoundError:
            pass

    def listing(self, relative: str) -> list[str]:
        """The names directly under a folder of the store ([] when it holds none)."""
        try:
            return sorted(Path(p).name for p in self.fs.ls(self._path(relative), detail=False))
        except FileNotFoundError:
            return []

    @contextmanager
    def lease(self, relative: str, published: Callable[[], bool]) -> Iterator[bool]:
        """Hold the right to compute the entry `relative`. Yields True while this process holds
        it, or False as soon as `published()` says another process stored the entry. Waits while
        another live process holds it; breaks a lease its holder stopped renewing."""
        lease_path = self._path(relative) + ".lease"
        token = uuid.uuid4().hex
        started = time.monotonic()
        while True:
            if published():
                yield False
                return
            if self._create(lease_path, token):
                break
            holder = self._read_lease(lease_path)
            if holder is not None and time.time() - holder.get("renewed", 0.0) > self.stale_seconds:
                # its holder stopped renewing: presumed dead (a killed worker); break it and try again
                self._delete_if(lease_path, holder.get("token"))
                continue
            if time.monotonic() - started > self.wait_seconds:
                raise CacheError(f"waited {self.wait_seconds:.0f}s for {lease_path}, held by "
                                 f"{(holder or {}).get('holder', 'another audit')}; if no audit is running, "
                                 "delete that object")
            time.sleep(self.poll_seconds)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lease_path, token, stop), daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            self._delete_if(lease_path, token)

    def _lease_body(self, token: str) -> bytes:
        return json.dumps({"token": token, "renewed": time.time(),
                           "holder": f"{platform.node()} pid {os.getpid()}"}).encode()

    def _create(self, path: str, token: str) -> bool:
        """Create the lease object only if it is absent; False when another process holds it."""
        try:
            self.fs.pipe_file(path, self._lease_body(token), mode="create")
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, TypeError, ValueError) as exc:  # a filesystem without exclusive create
            if not self._warned:
                self._warned = True
                warnings.warn(SwigluAuditWarning(
                    f"{self.url} cannot create an object only if it is absent ({type(exc).__name__}: {exc}); "
                    "two audits at once may both compute an entry (each copy is valid; the last write wins)"),
                    stacklevel=4)
            return True

    def _read_lease(self, path: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None  # released meanwhile: try again at once
        except (ValueError, OSError):
            return {"renewed": 0.0}  # unreadable: treated as stale

    def _renew(self, path: str, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.renew_seconds):
            holder = self._read_lease(path)
            if holder is None or holder.get("token") != token:
                return  # broken by another audit that judged this process dead: nothing to renew
            self.fs.pipe_file(path, self._lease_body(token))

    def _delete_if(self, path: str, token: str | None) -> None:
        holder = self._read_lease(path)
        if holder is not None and holder.get("token") == token:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass
