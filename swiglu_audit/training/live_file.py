"""A live-data file a pipeline dropped (.npz with x_live and y_live, or .npy with x_live), read
without trusting it: never unpickled, and each array's header checked against the bytes the file
holds before numpy allocates what the header declares."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataContractError

# Deflate shrinks data at most about 1032 to 1: a zip member claiming more bytes than that is lying
DEFLATE_MAX_RATIO = 1032


def read_live_file(path: Path, where: str) -> dict[str, np.ndarray]:
    """x_live (and y_live) of an .npz file, or x_live of an .npy file. A file a pipeline dropped
    can be truncated, rotten or empty, and each fails with an error of its own (BadZipFile,
    EOFError, a lying header's MemoryError): every one is the file's problem, a usage error."""
    try:
        if path.suffix == ".npy":
            with path.open("rb") as fh:
                _check_npy_header(fh, path.stat().st_size, path.name)
                fh.seek(0)
                return {"x_live": np.load(fh, allow_pickle=False)}  # never unpickle what was dropped there
        return _read_npz(path)
    except Exception as exc:  # noqa: BLE001  # whatever a damaged file raises, the fix is the same
        raise DataContractError(f"{where} cannot be read ({type(exc).__name__}: {exc}): the file is damaged, "
                                "unreadable or not written by numpy; write it again with numpy.savez (x_live, "
                                "optionally y_live) or numpy.save (x_live), without object arrays") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The x_live and y_live members of an .npz file, each checked before it is read."""
    out, archive_size = {}, path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for key in ("x_live", "y_live"):
            if f"{key}.npy" not in names:
                continue
            info = archive.getinfo(f"{key}.npy")
            _check_member_size(info, archive_size)
            with archive.open(info) as fh:
                _check_npy_header(fh, info.file_size, info.filename)
                fh.seek(0)
                out[key] = np.lib.format.read_array(fh, allow_pickle=False)
    return out


def _check_member_size(info: zipfile.ZipInfo, archive_size: int) -> None:
    """ValueError where a zip member claims more bytes than its archive can hold (stored members
    hold their size, deflated ones at most DEFLATE_MAX_RATIO times it): the member's size bounds
    what its header may declare, so it must not lie either."""
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: DEFLATE_MAX_RATIO}.get(info.compress_type)
    if ratio is None:
        raise ValueError(f"{info.filename} is compressed with zip method {info.compress_type}, which numpy "
                         "does not write")
    if info.compress_size > archive_size or info.file_size > ratio * info.compress_size:
        raise ValueError(f"{info.filename} claims {info.file_size} bytes from {info.compress_size} compressed "
                         f"bytes in a file of {archive_size}")


def _check_npy_header(fh, size: int, name: str) -> None:
    """ValueError where the .npy header at `fh` declares other than the `size` bytes the file (or zip
    member) holds: numpy allocates what a header declares before it reads, so a damaged header
    must not get that far."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version not in readers:  # 3.0 is written only for structured arrays
        raise ValueError(f"{name} is .npy format {version[0]}.{version[1]}, not a plain numeric array")
    shape, _, dtype = readers[version](fh)
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects (dtype {dtype}), which are never unpickled")
    declared, held = math.prod(shape) * dtype.itemsize, size - fh.tell()
    if declared != held:
        raise ValueError(f"{name}'s header declares shape {shape} of {dtype} ({declared} bytes), but it holds "
                         f"{held} bytes")
