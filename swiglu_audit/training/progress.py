"""Progress of long work (training, attacks), shown where a person is looking and quiet in logs.

- Serial run on a terminal: one redrawn line on the real terminal (bypassing pytest's capture).
- Under pytest-xdist the workers have no terminal: each writes its state (what it is doing, how
  many of its items are done, since when) to a small JSON file in a folder the controller made
  and named in each worker's xdist `workerinput`, and the controller's `ProgressBoard` shows all of them on one
  line with an estimate of the time left.
- Not a terminal (CI logs): the board writes a full line every `SWIGLU_AUDIT_PROGRESS_INTERVAL`
  seconds (30 by default); `-q` turns it off.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

INTERVAL_ENV = "SWIGLU_AUDIT_PROGRESS_INTERVAL"
DEFAULT_LOG_INTERVAL = 30.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """What this process is doing: `update(message, done, total)` as work goes on."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None, channel: Path | None = None):
        self.stream: TextIO = stream or sys.__stderr__ or sys.stderr
        self.channel = channel  # a worker's progress file, which the controller's board reads
        if enabled is None:
            enabled = bool(self.stream and self.stream.isatty()) and not os.environ.get("CI")
        self.enabled = enabled
        self.started = time.time()
        self.done_items: int | None = None
        self.total: int | None = None
        self._last = 0.0

    def update(self, message: str, done: int | None = None, total: int | None = None) -> None:
        if done is not None:
            self.done_items, self.total = done, total
        now = time.monotonic()
        last_item = done is not None and done == total
        if now - self._last < 0.2 and not last_item:  # a redraw (or a file write) per 200 ms is plenty
            return
        self._last = now
        if self.channel is not None:
            self._publish({"message": message, "done": self.done_items, "total": self.total,
                           "started": self.started, "time": time.time()})
        elif self.enabled:
            count = f" ({self.done_items}/{self.total})" if self.total else ""
            self.stream.write(f"\r\x1b[2K[swiglu-audit] {_clock(time.time() - self.started)} {message}{count}")
            self.stream.flush()

    def done(self) -> None:
        if self.channel is not None:
            self._publish({"message": "prefetch done", "done": self.total, "total": self.total,
                           "started": self.started, "time": time.time(), "finished": True})
        elif self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _publish(self, state: dict) -> None:
        """Written whole and renamed into place: the board never reads half a file."""
        assert self.channel is not None
        try:
            tmp = self.channel.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.channel)
        except OSError:  # the board is a convenience: losing a line must never fail the audit
            pass


def read_states(folder: Path) -> dict[str, dict]:
    states = {}
    for path in sorted(folder.glob("*.json")):
        try:
            states[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return states


def time_left(state: dict, now: float) -> float | None:
    """Seconds a worker still needs at its rate so far, or None before its first item is done."""
    done, total = state.get("done"), state.get("total")
    if state.get("finished") or (total is not None and done == total):
        return 0.0
    if not done or not total:
        return None
    return (now - state["started"]) / done * (total - done)


def render(states: dict[str, dict], started: float, now: float) -> str:
    """One line: elapsed time, each worker's item count and current work, the time left."""
    parts = []
    for worker, s in sorted(states.items()):
        count = f" {s['done']}/{s['total']}" if s.get("total") else ""
        parts.append(f"{worker}{count} {s.get('message', '')}")
    lefts = [time_left(s, now) for s in states.values()]
    known = [t for t in lefts if t is not None]
    eta = f" | about {_clock(max(known))} left" if known and len(known) == len(lefts) else ""
    return f"[swiglu-audit] {_clock(now - started)} | " + " | ".join(parts or ["starting workers"]) + eta


class ProgressBoard:
    """The controller's view of its xdist workers' progress files (see the module docstring)."""

    def __init__(self, folder: Path, stream: TextIO, tty: bool, interval: float | None = None):
        self.folder, self.stream, self.tty = folder, stream, tty
        self.interval = interval if interval is not None else float(os.environ.get(INTERVAL_ENV, DEFAULT_LOG_INTERVAL))
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swiglu-audit-progress", daemon=True)
        self._drawn = False

    @classmethod
    def create_folder(cls) -> Path:
        return Path(tempfile.mkdtemp(prefix="swiglu-audit-progress-"))

    def start(self) -> None:
        self._thread.start()

    def pytest_runtest_logreport(self, report) -> None:  # registered as a plugin on the controller
        self.pause()

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def pause(self) -> None:
        """Tests have started reporting: on a terminal, pytest's own progress takes the line."""
        if self.tty:
            self.stop()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _run(self) -> None:
        last_line = 0.0
        while not self._stop.wait(1.0 if self.tty else 0.5):
            states = read_states(self.folder)
            now = time.time()
            try:
                if self.tty:
                    self.stream.write("\r\x1b[2K" + render(states, self.started, now)[:250])
                    self._drawn = True
                elif now - last_line >= self.interval and states:
                    self.stream.write("\n" + render(states, self.started, now) + "\n")
                    last_line = now
                self.stream.flush()
            except (OSError, ValueError):  # the stream went away: the run is ending
                return
