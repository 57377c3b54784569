"""A one-line progress display for long work that stays quiet in CI logs.

It writes to the real terminal (bypassing pytest's capture) only when that is a TTY and the CI
variable is unset; xdist workers have no TTY, so they stay quiet too.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream: TextIO = stream or sys.__stderr__ or sys.stderr
        if enabled is None:
            enabled = bool(self.stream and self.stream.isatty()) and not os.environ.get("CI")
        self.enabled = enabled
        self._last = 0.0

    def update(self, message: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:  # a redraw per 200 ms is plenty
            return
        self._last = now
        self.stream.write(f"\r\x1b[2K[swiglu-audit] {message}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
