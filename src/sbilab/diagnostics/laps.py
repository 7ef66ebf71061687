"""Seconds per named step of the diagnostics (reported as ``DiagnosticsResult.timings``)."""

from __future__ import annotations

import time


class Laps:
    """Seconds spent in each named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._last
        self._last = now

    def skip(self) -> None:
        """Start the next step now (time already accounted for elsewhere)."""
        self._last = time.perf_counter()

    def total(self) -> float:
        return time.perf_counter() - self._start
