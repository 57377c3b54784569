"""Giving freed memory back to the system between the audit's stages.

glibc's allocator keeps memory that Python and torch free for its own reuse: a worker that has
trained and measured model after model holds hundreds of MB it no longer uses, and the process
tree (the controller and its xdist workers) crossed the 2 GB budget of the standard audit that
way (BENCHMARKS.md, sixteenth stop). Setting lower allocator thresholds for the whole run returns
memory at every free instead, but made the audit half again as slow; trimming once per stage
(after the plan, after each model's measurements) costs milliseconds.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from functools import cache


@cache
def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc's name (find_library would start ldconfig)
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None


def release_freed_memory(collect: bool = True) -> bool:
    """Collect Python's unreachable objects (unless not `collect`: a full collection takes about
    0.1 s in an audit's process, a trim alone under a millisecond), then hand the allocator's free
    memory back to the system. True where the allocator could be asked to (glibc)."""
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
