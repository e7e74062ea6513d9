"""Progress reporting for long runs: a text bar for people, JSON lines for
programs (the Slicer module follows them), or nothing.

Every event has a stage, an overall fraction in [0, 1] and a message; JSON
lines may carry extra keys (epoch, loss, val_dice, ...).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

MODES = ("bar", "json", "none")


class Progress:
    def __init__(self, mode: str = "bar", stream: TextIO | None = None, min_interval: float = 0.2):
        if mode not in MODES:
            raise ValueError(f"unknown progress mode {mode!r} (known: {', '.join(MODES)})")
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self._last = 0.0
        self._high = 0.0  # the highest fraction reported so far
        self._bar_open = False

    def __call__(self, stage: str, fraction: float, message: str = "", **extra: Any) -> None:
        # the overall fraction never goes backwards (a stage may restart its
        # own count at 0, e.g. training after loading): readers show a bar
        fraction = min(1.0, max(0.0, float(fraction), self._high))
        self._high = fraction
        if self.mode == "json":
            event = {"stage": stage, "fraction": round(fraction, 4), "message": message, **extra}
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()
        elif self.mode == "bar":
            self._bar(stage, fraction, message, force=bool(extra) or fraction >= 1.0)

    def _bar(self, stage: str, fraction: float, message: str, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        width = 30
        filled = int(round(width * fraction))
        line = f"\r{stage:>8} [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}% {message}"
        self.stream.write(line[:160].ljust(100))
        self._bar_open = True
        if fraction >= 1.0 or force:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.flush()

    def error(self, message: str) -> None:
        if self.mode == "json":
            self.stream.write(json.dumps({"stage": "error", "fraction": 1.0, "message": message}) + "\n")
            self.stream.flush()
        else:
            if self._bar_open:
                self.stream.write("\n")
            self.stream.write(f"ldseg: error: {message}\n")
            self.stream.flush()

    def info(self, message: str) -> None:
        """A one-off note (e.g. which device runs)."""
        if self.mode == "json":
            self.stream.write(json.dumps({"stage": "info", "fraction": self._high, "message": message}) + "\n")
        elif self.mode == "bar":
            self.stream.write(f"ldseg: {message}\n")
        self.stream.flush()


def null_progress(stage: str, fraction: float, message: str = "", **extra: Any) -> None:
    """A progress callback that reports nothing."""
