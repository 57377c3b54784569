"""One audit split over N machines: shard K of N runs the checks whose id hashes to K.

The split is by check (pytest item id), stable across machines and runs (crc32, not Python's
salted hash), so the shards of one audit never overlap and together cover every check. A shard
trains or loads what its own checks need; shards that share the checkpoint cache (a CI cache)
skip the training another shard did, and otherwise retrain. `swiglu-audit merge` joins the
shards' report.json files into the report an unsharded run would write. Torch-free.
"""

from __future__ import annotations

import zlib

from ..errors import ConfigError


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" with 1 <= K <= N -> (K - 1, N)."""
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--swiglu-audit-shard={text!r}: give K/N, e.g. 1/3 for the first of three shards") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--swiglu-audit-shard={text!r}: give K/N with K between 1 and N")
    return k - 1, n


def shard_of(item_id: str, count: int) -> int:
    return zlib.crc32(item_id.encode()) % count


def split(items: list, index: int, count: int) -> tuple[list, list]:
    """(the items of shard `index`, the others), keeping pytest's order."""
    keep = [item for item in items if shard_of(item.nodeid.split("::", 1)[-1], count) == index]
    return keep, [item for item in items if item not in keep]
