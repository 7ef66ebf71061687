"""Where simulation chunks run: in this process, in a pool of local worker processes, or on a Dask cluster.

A backend maps independent chunk jobs to results and yields them as they finish, so
the stage can cache each chunk as soon as it exists. Every chunk's numbers depend only
on its (θ, per-index seeds), never on the backend that ran it.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

import torch

from sbilab.config import SIMULATION_BACKENDS as BACKENDS
from sbilab.errors import ConfigError


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
    """One torch thread per worker; Ctrl-C is the parent's to handle (it cancels the pool and marks the run
    KILLED), so a terminal's SIGINT to the whole process group prints no traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_backend(name: str, num_workers: int, *, address: str = "", retries: int = 2) -> Backend:
    """The configured backend (``simulation.backend``).

    ``local`` with one worker runs in this process; ``dask`` always uses its cluster (the one at
    ``address``, or a local one of ``num_workers`` processes), with ``retries`` per failed chunk.
    """
    if name == "dask":
        from sbilab.simulation.dask_backend import DaskBackend

        return DaskBackend(address, num_workers, retries)
    if name == "serial" or num_workers <= 1:
        return SerialBackend()
    if name == "local":
        return LocalProcessBackend(num_workers)
    raise ConfigError(f"simulation.backend={name!r}: allowed values are {', '.join(repr(b) for b in BACKENDS)}")
