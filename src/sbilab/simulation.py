"""The simulation stage: θ ~ prior → simulator → summary, in chunks, in parallel, cached.

Every simulation ``i`` of a dataset gets its parameters and its seed from
(run seed, purpose, i) alone, so the result is identical whatever the chunk size,
the number of workers or the backend. Finished chunks are written to an on-disk
cache keyed by everything that determines the data; a rerun (or another job of a
sweep) reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import multiprocessing
import numpy as np
import torch
from filelock import FileLock
from torch import Tensor
from torch.distributions import Distribution

from sbilab.simulators.base import Simulator, derive_seeds
from sbilab.errors import ConfigError

log = logging.getLogger(__name__)

#: bumped when the way data are derived from a key changes
STAGE_VERSION = "1"


class SimulationError(RuntimeError):
    """The simulation stage produced no usable data."""


@dataclass
class Dataset:
    """Valid simulations and how they were obtained."""

    theta: Tensor  # [N_valid, D] float32
    x: Tensor  # [N_valid, d] float32
    num_requested: int
    num_invalid: int
    seconds: float
    chunks_total: int
    chunks_from_cache: int
    key: str

    @property
    def from_cache(self) -> bool:
        return self.chunks_total > 0 and self.chunks_from_cache == self.chunks_total

    @property
    def per_second(self) -> float:
        simulated = self.num_requested * (1 - self.chunks_from_cache / max(self.chunks_total, 1))
        return simulated / self.seconds if self.seconds > 0 and simulated > 0 else float("nan")


def stage_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose ("train", "test", ...) of a run seed."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_prior(prior: Distribution, num: int, seed: int) -> Tensor:
    """``num`` prior draws [num, D] (float32), reproducible from ``seed``, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return prior.sample((num,)).reshape(num, -1).float()


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


# ---------------------------------------------------------------------------
# Parallel backends: one small interface, so Ray/Dask can be added without touching simulators.


class Backend:
    """Runs independent tasks and yields ``(task_index, result)`` as they finish."""

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""


class SerialBackend(Backend):
    """Everything in this process (debugging, tiny runs)."""

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        for index, args in enumerate(tasks):
            yield index, fn(*args)


class LocalProcessBackend(Backend):
    """A pool of local worker processes (fork on Linux: no re-import cost)."""

    def __init__(self, num_workers: int) -> None:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.executor: Executor = ProcessPoolExecutor(
            max_workers=num_workers, mp_context=multiprocessing.get_context(method), initializer=_worker_init
        )

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        futures = {self.executor.submit(fn, *args): index for index, args in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _worker_init() -> None:
    torch.set_num_threads(1)


def make_backend(name: str, num_workers: int) -> Backend:
    """The configured backend (``simulation.backend``)."""
    if name == "serial" or num_workers <= 1:
        return SerialBackend()
    if name == "local":
        return LocalProcessBackend(num_workers)
    raise ConfigError(f"simulation.backend={name!r}: allowed values are 'local', 'serial'")


# ---------------------------------------------------------------------------


def _simulate_chunk(simulator: Simulator, summary: Callable[[Tensor], Tensor], theta: Tensor, seeds: np.ndarray) -> np.ndarray:
    """Summaries [n, d] float32 for one chunk (runs in a worker)."""
    x = simulator.simulate_summaries(theta, seeds, summary)
    return x.reshape(x.shape[0], -1).float().numpy()


class _ChunkStore:
    """Chunk files ``<dir>/<start>-<stop>.npy`` written atomically."""

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


def simulate_dataset(
    simulator: Simulator,
    prior: Distribution,
    summary: Callable[[Tensor], Tensor],
    num_simulations: int,
    seed: int,
    *,
    purpose: str = "train",
    chunk_size: int = 2000,
    num_workers: int = 1,
    backend: str = "local",
    cache_dir: Optional[str | Path] = None,
    key_parts: Optional[dict[str, Any]] = None,
    invalid_warn_fraction: float = 0.05,
    progress: Optional[bool] = None,
) -> Dataset:
    """Simulate ``num_simulations`` (θ, x) pairs; drop and count non-finite x.

    ``key_parts`` (the configs of simulator, prior and summary) enable the cache
    under ``cache_dir``; without them nothing is cached.
    """
    started = time.perf_counter()
    seed_value = stage_seed(seed, purpose)
    theta = sample_prior(prior, num_simulations, seed_value)
    seeds = derive_seeds(seed_value, 0, num_simulations)
    bounds = [(s, min(s + chunk_size, num_simulations)) for s in range(0, num_simulations, chunk_size)]

    key = cache_key({**(key_parts or {}), "num_simulations": num_simulations, "seed": seed, "purpose": purpose,
                     "simulator_class": type(simulator).__qualname__, "simulator_version": simulator.version,
                     "summary_code": source_digest(summary)})
    use_cache = cache_dir is not None and key_parts is not None
    store = _ChunkStore(Path(cache_dir) / key if use_cache else None)
    lock = FileLock(str(Path(cache_dir) / f"{key}.lock")) if use_cache else None

    chunks: dict[int, np.ndarray] = {}
    if lock is not None:
        lock.acquire()
    try:
        for index, (start, stop) in enumerate(bounds):
            cached = store.load(start, stop)
            if cached is not None:
                chunks[index] = cached
        from_cache = len(chunks)
        todo = [i for i in range(len(bounds)) if i not in chunks]
        if todo:
            tasks = [(simulator, summary, theta[bounds[i][0] : bounds[i][1]], seeds[bounds[i][0] : bounds[i][1]]) for i in todo]
            runner = make_backend(backend, min(num_workers, len(todo)))
            bar = _progress_bar(sum(bounds[i][1] - bounds[i][0] for i in todo), purpose, progress)
            try:
                for task_index, x in runner.map(_simulate_chunk, tasks):
                    chunk_index = todo[task_index]
                    chunks[chunk_index] = x
                    store.save(*bounds[chunk_index], x)
                    bar.update(x.shape[0])
            finally:
                bar.close()
                runner.close()
    finally:
        if lock is not None:
            lock.release()

    x_all = np.concatenate([chunks[i] for i in range(len(bounds))]) if bounds else np.zeros((0, 0), np.float32)
    valid = np.isfinite(x_all).all(axis=1)
    num_invalid = int((~valid).sum())
    if num_simulations and num_invalid == num_simulations:
        raise SimulationError(f"all {num_simulations} simulations ({purpose}) returned non-finite values")
    if num_simulations and num_invalid / num_simulations > invalid_warn_fraction:
        warnings.warn(
            f"{num_invalid} of {num_simulations} simulations ({purpose}) were non-finite and dropped "
            f"(more than simulation.invalid_warn_fraction={invalid_warn_fraction})",
            stacklevel=2,
        )
    valid_t = torch.from_numpy(valid)
    return Dataset(
        theta=theta[valid_t],
        x=torch.from_numpy(x_all[valid]),
        num_requested=num_simulations,
        num_invalid=num_invalid,
        seconds=time.perf_counter() - started,
        chunks_total=len(bounds),
        chunks_from_cache=from_cache,
        key=key,
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, purpose: str, enabled: Optional[bool]) -> Any:
    """A tqdm bar on stderr that only appears after 2 s (short runs stay quiet)."""
    if enabled is False:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"simulating ({purpose})", unit="sim", delay=2.0, file=sys.stderr,
                disable=None if enabled is None else not enabled)
