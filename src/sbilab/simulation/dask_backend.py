"""Simulation chunks on a Dask cluster (``simulation.backend=dask``).

The client connects to a running scheduler (``simulation.address``: one started by hand, by
dask-jobqueue's ``SLURMCluster`` or by ``python -m services``) or, when the address is empty,
starts a ``LocalCluster`` of ``simulation.num_workers`` single-threaded processes.

Chunks are submitted a few at a time (twice the cluster's worker threads, at least two) and come
back in completion order: the client holds at most that many results beyond what the stage has
already cached, whatever the dataset's size. A chunk whose task raised is rerun ``retries`` times
(Dask's own ``retries=``); a chunk on a worker that died is recomputed by the scheduler without
counting as a retry. Every chunk's numbers depend only on its (θ, per-index seeds), so the
result equals the ``local`` backend's bit for bit.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator, Optional, Sequence

from sbilab.errors import ConfigError
from sbilab.simulation.backends import Backend

#: seconds to wait for a scheduler at ``simulation.address`` before giving up
CONNECT_TIMEOUT_S = 10


def single_threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` with one torch thread (a worker's cores belong to its other tasks)."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


class DaskBackend(Backend):
    """Chunks as Dask tasks on the scheduler at ``address``, or on a local cluster of ``num_workers`` processes."""

    def __init__(self, address: str, num_workers: int, retries: int = 2) -> None:
        from distributed import Client, LocalCluster

        self.retries = retries
        self.cluster: Optional[Any] = None
        if address:
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except OSError as error:
                raise ConfigError(f"simulation.address={address!r}: no Dask scheduler answers "
                                  f"({str(error).strip().splitlines()[0]})") from None
        else:
            self.cluster = LocalCluster(n_workers=num_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster, set_as_default=False)

    def in_flight_limit(self) -> int:
        """How many chunks may be submitted and not yet handed back: two per worker thread, at least two."""
        return max(2, 2 * sum(self.client.nthreads().values()))

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        prefix = f"sbilab-chunk-{uuid.uuid4().hex[:8]}"
        todo = iter(enumerate(tasks))
        pending: dict[str, tuple[int, Any]] = {}  # key → (task index, future): submitted, not yet handed back
        running = as_completed(loop=self.client.loop)

        def submit_next() -> None:
            task = next(todo, None)
            if task is not None:
                index, args = task
                future = self.client.submit(single_threaded, fn, *args, key=f"{prefix}-{index}", pure=False,
                                            retries=self.retries)
                pending[future.key] = (index, future)
                running.add(future)

        try:
            for _ in range(self.in_flight_limit()):
                submit_next()
            for future in running:
                result = future.result()
                index, _ = pending.pop(future.key)
                future.release()  # the cluster may forget it: the stage caches it
                submit_next()
                yield index, result
        finally:
            if pending:  # the consumer stopped early (an error, Ctrl-C): nothing keeps running for it
                self.client.cancel([future for _, future in pending.values()])

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
