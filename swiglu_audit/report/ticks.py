"""Axis ticks for the report's hand-drawn SVG plots: round values a reader can read."""

from __future__ import annotations

import math


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, target - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    ticks = [round((first + i) * step, 12) for i in range(int((hi - first * step) / step + 1e-9) + 1)]
    return ticks or [lo, hi]


def tick_label(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"
