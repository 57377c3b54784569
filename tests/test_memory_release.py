"""Freed memory goes back to the system between the audit's stages (util/memory.py)."""

import ctypes
import os
import sys

import pytest

from swiglu_audit.util.memory import _malloc_trim, release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None,
                    reason="reads /proc and asks glibc's allocator")
@pytest.mark.skipif(any(os.environ.get(v) for v in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")),
                    reason="the allocator's thresholds are set: blocks may not come from the heap")
def test_memory_the_allocator_kept_after_a_stage_goes_back_to_the_system():
    """What a worker's stage leaves: many blocks freed below one still in use, which the allocator
    keeps (it returns only the heap's free top by itself). After the release the resident set is
    back near where it was before the stage."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 * 1024, 3000  # under glibc's mmap threshold: from the heap, as small tensors are
    release_freed_memory()  # what earlier tests left free would be reused by these blocks
    before = _rss_mb()
    blocks = [libc.malloc(block) for _ in range(count)]
    for address in blocks:
        ctypes.memset(address, 1, block)  # touched: resident
    kept = libc.malloc(block)  # still in use above the freed ones: the heap's top cannot shrink by itself
    for address in blocks:
        libc.free(address)
    held = _rss_mb()
    try:
        assert held - before > 150  # about 190 MB freed, still held by the allocator
        assert release_freed_memory()
        assert _rss_mb() - before < 50
    finally:
        libc.free(kept)
