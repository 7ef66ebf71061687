"""Peak resident memory of a stage, sampled while it runs (``memory/<stage>_peak_mb``).

``ru_maxrss`` only knows the peak of the whole process, which training or a reference posterior
may set; a stage's own bound ("the diagnostics need at most 2 GB beyond the trained network") needs
the peak during the stage minus what was resident when it began. A daemon thread reads the RSS of
this process and its children (simulation workers) every ``interval`` seconds.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Optional

import psutil


def resident_bytes(process: psutil.Process) -> int:
    """RSS of ``process`` and its live children."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.beyond_start_mb``: the stage's peak above its start."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.start_bytes = 0
        self.peak_bytes = 0

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, resident_bytes(self._process))

    def __enter__(self) -> "PeakMemory":
        self.start_bytes = self.peak_bytes = resident_bytes(self._process)
        self._thread.start()
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], trace: Optional[TracebackType]) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, resident_bytes(self._process))

    @property
    def beyond_start_mb(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20
