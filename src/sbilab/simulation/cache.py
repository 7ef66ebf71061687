"""The content-addressed simulation cache: a key per dataset, one file per finished chunk.

The key hashes everything that determines a dataset (the simulator, prior and summary
configs, the budget, the seed and purpose, the simulator's code version and the
summary's source files), so a changed input misses the cache instead of serving stale
x. Chunks are written under a temporary name and renamed, so a killed writer never
leaves a file that looks like a chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)

#: bumped when the way data are derived from a key changes
STAGE_VERSION = "1"


def cache_key(parts: dict[str, Any]) -> str:
    """Hash of everything that determines a dataset (configs as plain JSON)."""
    blob = json.dumps({"stage": STAGE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def source_digest(obj: Any) -> str:
    """Hash of the Python files beside the module that defines ``type(obj)`` (its package's code).

    Part of the cache key for summaries: editing a statistic's definition must not
    serve x computed by the old one. Simulators carry an explicit ``version``
    instead (their compiled kernel is not in these files).
    """
    module = sys.modules.get(type(obj).__module__)
    path = getattr(module, "__file__", None)
    if path is None:
        return "unknown"
    digest = hashlib.sha256()
    for source in sorted(Path(path).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class ChunkStore:
    """Chunk files ``<dir>/<start>-<stop>.npy`` written atomically (no directory: nothing is stored)."""

    def __init__(self, directory: Optional[Path]) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def path(self, start: int, stop: int) -> Optional[Path]:
        return None if self.directory is None else self.directory / f"{start:09d}-{stop:09d}.npy"

    def load(self, start: int, stop: int) -> Optional[np.ndarray]:
        path = self.path(start, stop)
        if path is None or not path.exists():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache chunk %s", path)
            return None

    def save(self, start: int, stop: int, x: np.ndarray) -> None:
        path = self.path(start, stop)
        if path is None:
            return
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # not *.npy: never mistaken for a chunk
        with open(tmp, "wb") as handle:
            np.save(handle, x)
        os.replace(tmp, path)
