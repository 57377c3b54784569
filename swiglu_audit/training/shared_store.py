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
STALE_SECONDS = 120.0  # a lease unchanged for this long is a dead holder's; a retried job waits about this
LISTING_SECONDS = 30.0  # how long one listing of the store answers "is this entry there?"
POLL_SECONDS = 2.0  # how often a waiting audit looks for the entry (each look is a request)
# a wait this long, with the lease renewed throughout, is reported, not endured: as long as the
# local cache's file lock, which other workers on this machine wait for meanwhile
WAIT_SECONDS = 3600.0

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
        self._listing: tuple[float, frozenset[str]] | None = None  # (when, every entry's relative path)

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self._path(relative)))

    def names(self, max_age: float = LISTING_SECONDS) -> frozenset[str]:
        """Every entry's relative path, from one listing of the store kept for `max_age` seconds:
        the plan asks about hundreds of entries, which one request per entry would make slow.
        A name listed here may be missing later (healed), or a new one not yet listed: callers
        use it to plan and to skip work, and the cache's load-or-compute looks again itself."""
        now = time.monotonic()
        if self._listing is None or now - self._listing[0] > max_age:
            try:
                found = self.fs.find(self.root)
            except FileNotFoundError:
                found = []
            prefix = self.root + "/"
            self._listing = (now, frozenset(str(f)[len(prefix):] for f in found if str(f).startswith(prefix)))
        return self._listing[1]

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
    def lease(self, relative: str, published: Callable[[], bool]) -> Iterator[Lease | None]:
        """Hold the right to compute the entry `relative`. Yields a `Lease` while this process
        holds it, or None once `published()` says another process stored the entry (looked at
        again after the lease is taken: a holder may publish and release just before). Waits while
        another process keeps its lease renewed; breaks a lease whose content has not changed for
        `stale_seconds` by this process's own clock (a holder's clock may be skewed)."""
        lease_path = self._path(relative) + ".lease"
        token = uuid.uuid4().hex
        started = time.monotonic()
        seen, seen_since = None, time.monotonic()  # the holder's last lease content, and since when
        while True:
            if published():
                yield None
                return
            if self._create(lease_path, token):
                if published():  # published and released between the look above and the create
                    self._delete_if(lease_path, token)
                    yield None
                    return
                break
            body = self._read_body(lease_path)
            if body is None:  # released meanwhile: try again at once
                continue
            if body != seen:
                seen, seen_since = body, time.monotonic()
            elif time.monotonic() - seen_since > self.stale_seconds:
                # its holder stopped renewing: presumed dead (a killed worker); break it and try again
                self._delete_if(lease_path, _field(body, "token"))
                seen = None
                continue
            if time.monotonic() - started > self.wait_seconds:
                raise CacheError(f"waited {self.wait_seconds:.0f}s for {lease_path}, held by "
                                 f"{_field(body, 'holder') or 'another audit'}; if no audit is running, "
                                 "delete that object")
            time.sleep(self.poll_seconds)
        held = Lease()
        renewer = threading.Thread(target=self._renew, args=(lease_path, token, held), daemon=True)
        renewer.start()
        try:
            yield held
        finally:
            held.released.set()
            renewer.join()
            self._delete_if(lease_path, token)

    def _lease_body(self, token: str) -> bytes:
        # "renewed" changes the content at each renewal (waiters watch for a change, by their clock)
        return json.dumps({"token": token, "renewed": time.time(),
                           "holder": f"{platform.node()} pid {os.getpid()}"}).encode()

    def _create(self, path: str, token: str) -> bool:
        """Create the lease object only if it is absent; False when another process holds it."""
        if not self._exclusive_known():
            self._warn_once("its filesystem is not known to create an object only if it is absent "
                            f"({type(self.fs).__name__})")
        try:
            self.fs.pipe_file(path, self._lease_body(token), mode="create")
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, TypeError, ValueError) as exc:  # a filesystem without exclusive create
            self._warn_once(f"it cannot create an object only if it is absent ({type(exc).__name__}: {exc})")
            return True

    def _exclusive_known(self) -> bool:
        """Whether this filesystem's create-if-absent is one atomic request (S3 If-None-Match, GCS
        ifGenerationMatch=0), or a single process's memory; fsspec's default is a look, then a write."""
        module = type(self.fs).__module__
        return module.split(".")[0] in ("s3fs", "gcsfs") or type(self.fs).__name__ == "MemoryFileSystem" \
            or getattr(self.fs, "exclusive_create", False)

    def _warn_once(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(SwigluAuditWarning(
                f"the shared cache {self.url}: {why}; two audits at once may both compute an entry (each copy "
                "is valid, and the last write wins whole)"), stacklevel=5)

    def _read_body(self, path: str) -> bytes | None:
        """The lease object's content, None when there is none. A read that fails otherwise (a
        transient network error) is retried, not taken for an absent or dead holder."""
        for attempt in range(3):
            try:
                return bytes(self.fs.cat_file(path))
            except FileNotFoundError:
                return None
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(self.poll_seconds)
        return None

    def _renew(self, path: str, token: str, held: Lease) -> None:
        """Rewrite the lease while the holder works. A failed renewal is tried again at the next
        beat (a transient error must not let the lease go stale); a lease that another audit broke,
        judging this one dead, is left to it, and `held.lost` says so."""
        while not held.released.wait(self.renew_seconds):
            try:
                body = self._read_body(path)
                if body is None or _field(body, "token") != token:
                    held.lost.set()
                    return
                self.fs.pipe_file(path, self._lease_body(token))
            except Exception:  # noqa: BLE001  the next beat tries again; staleness takes stale_seconds
                continue

    def _delete_if(self, path: str, token: str | None) -> None:
        """Delete the lease if it is still `token`'s (a look, then a delete: object stores offer
        no conditional delete through fsspec, so a lease created in between could be removed; its
        holder then sees `lost` at its next renewal)."""
        try:
            body = self._read_body(path)
        except OSError:
            return
        if body is not None and _field(body, "token") == token:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass


class Lease:
    """A held lease: `lost` is set when another audit broke it (it judged this process dead)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.lost = threading.Event()


def _field(body: bytes, name: str) -> str | None:
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None
