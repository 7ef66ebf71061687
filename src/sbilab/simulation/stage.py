"""The simulation stage: θ ~ prior → simulator → summary, in chunks, on a backend, cached.

Every simulation ``i`` of a dataset gets its parameters and its seed from
(run seed, purpose, i) alone, so the result is identical whatever the chunk size,
the number of workers or the backend. Finished chunks are written to an on-disk
cache keyed by everything that determines the data; a rerun (or another job of a
sweep) reuses them. Non-finite simulations are dropped and counted.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from filelock import FileLock
from torch import Tensor
from torch.distributions import Distribution

from sbilab.priors import sample_prior
from sbilab.rng import per_index_seeds, purpose_seed
from sbilab.simulation.backends import make_backend
from sbilab.simulation.cache import ChunkStore, cache_key, source_digest
from sbilab.simulators.base import Simulator

log = logging.getLogger(__name__)


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
    def cache_status(self) -> str:
        """``hit`` (every chunk reused), ``partial`` or ``miss``."""
        if self.from_cache:
            return "hit"
        return "partial" if self.chunks_from_cache else "miss"

    @property
    def per_second(self) -> float:
        simulated = self.num_requested * (1 - self.chunks_from_cache / max(self.chunks_total, 1))
        return simulated / self.seconds if self.seconds > 0 and simulated > 0 else float("nan")

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``time/<prefix>simulate_s`` and ``simulation/<prefix>*``: how this dataset was obtained."""
        return {
            f"time/{prefix}simulate_s": self.seconds,
            f"simulation/{prefix}per_second": self.per_second,
            f"simulation/{prefix}invalid": self.num_invalid,
            f"simulation/{prefix}chunks_from_cache": self.chunks_from_cache,
        }


def simulate_chunk(simulator: Simulator, summary: Callable[[Tensor], Tensor], theta: Tensor,
                   seeds: np.ndarray) -> np.ndarray:
    """Summaries [n, d] float32 for one chunk (runs in a worker)."""
    x = simulator.simulate_summaries(theta, seeds, summary)
    return x.reshape(x.shape[0], -1).float().numpy()


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
    backend_options: Optional[Mapping[str, Any]] = None,
    theta_in_key: bool = False,
) -> Dataset:
    """Simulate ``num_simulations`` (θ, x) pairs; drop and count non-finite x.

    ``key_parts`` (the configs of simulator, prior and summary) enable the cache
    under ``cache_dir``; without them nothing is cached. ``theta_in_key``: the key also
    covers the drawn θ, for a ``prior`` that the configs do not determine (a sequential
    round's proposal, built from a trained network): a rerun that draws the same θ reuses
    the round, any other θ simulates afresh. ``backend_options`` go to
    :func:`~sbilab.simulation.backends.make_backend` (``address``, ``retries`` of ``dask``).
    """
    started = time.perf_counter()
    seed_value = purpose_seed(seed, purpose)
    theta = sample_prior(prior, num_simulations, seed_value)
    seeds = per_index_seeds(seed_value, 0, num_simulations)
    bounds = [(s, min(s + chunk_size, num_simulations)) for s in range(0, num_simulations, chunk_size)]

    key = cache_key({**(key_parts or {}), "num_simulations": num_simulations, "seed": seed, "purpose": purpose,
                     "simulator_class": type(simulator).__qualname__, "simulator_version": simulator.version,
                     "summary_code": source_digest(summary),
                     **({"theta": hashlib.sha256(theta.numpy().tobytes()).hexdigest()} if theta_in_key else {})})
    use_cache = cache_dir is not None and key_parts is not None
    store = ChunkStore(Path(cache_dir) / key if use_cache else None)
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
            tasks = [(simulator, summary, theta[start:stop], seeds[start:stop])
                     for start, stop in (bounds[i] for i in todo)]
            runner = make_backend(backend, min(num_workers, len(todo)), **(backend_options or {}))
            bar = _progress_bar(sum(bounds[i][1] - bounds[i][0] for i in todo), purpose, progress)
            try:
                for task_index, x in runner.map(simulate_chunk, tasks):
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
