"""Files written whole or not at all, and the metadata of safetensors files.

Every file the harness writes (reports, checkpoints, golden outputs, saved audits) goes through
`atomic_write`: the content goes to a temporary file beside the target, is flushed to disk, and
is then renamed over the target, so a reader (or a run killed half way) never sees half a file.
Torch-free: the reports use it too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object], suffix: str = ".tmp") -> None:
    """Call `write(temporary path)`, then rename that file onto `path`. The temporary file is
    removed when `write` fails, and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` string map of a safetensors file, read from its JSON header alone
    (8 bytes of little-endian length, then the header): no tensor is loaded."""
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        if header_len > os.fstat(fh.fileno()).st_size - 8:  # damaged: never read past the file
            raise ValueError(f"{Path(path).name}: header length {header_len} exceeds the file")
        header = json.loads(fh.read(header_len))
        metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
        if not isinstance(metadata, dict):
            raise ValueError(f"{Path(path).name}: the header holds no metadata map")
        return metadata
