"""A Dask scheduler and N workers on 127.0.0.1, each a ``dask`` CLI process (the way a cluster runs them).

Each worker is its own process group (nanny + worker), so one can be killed alone, as a node lost
mid-run. Clients need only ``DASK_SCHEDULER_ADDRESS`` (``env()``): ``distributed.Client()`` without
an address reads it from Dask's config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .procs import Daemon, free_port, own_dir, port_open


class DaskCluster:
    """``dask scheduler`` plus ``workers`` single-threaded ``dask worker`` processes, state in ``folder``."""

    def __init__(self, folder: Path, workers: int = 2, port: Optional[int] = None, threads: int = 1) -> None:
        self.folder = folder
        self.port = port or free_port()
        dask = [str(Path(sys.executable).with_name("dask"))]
        self.scheduler = Daemon("dask scheduler", [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                                   "--no-dashboard"], folder / "scheduler.log")
        self.workers = [
            Daemon(f"dask worker {index}", [*dask, "worker", self.address, "--name", f"worker-{index}",
                                             "--host", "127.0.0.1", "--nthreads", str(threads), "--nworkers", "1",
                                             "--no-dashboard", "--local-directory", str(folder / f"worker-{index}")],
                   folder / f"worker-{index}.log")
            for index in range(workers)
        ]

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"DASK_SCHEDULER_ADDRESS": self.address}

    def start(self, timeout: float = 60) -> "DaskCluster":
        """Scheduler first, then the workers; returns once all of them have registered."""
        own_dir(self.folder, None, 0o755)
        self.scheduler.start()
        self.scheduler.wait_until(lambda: port_open(self.port), timeout, "listening")
        for index in range(len(self.workers)):
            self.start_worker(index, timeout)
        return self

    def start_worker(self, index: int, timeout: float = 60) -> None:
        """(Re)start worker ``index`` and wait until the scheduler counts it (after a kill, say)."""
        self.workers[index].stop()
        self.workers[index].start()
        running = sum(worker.alive() for worker in self.workers)
        self.scheduler.wait_until(lambda: self.worker_count() == running, timeout, f"joined by {running} workers")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.scheduler.stop()

    def daemons(self) -> list[Daemon]:
        return [self.scheduler, *self.workers]

    def worker_count(self) -> int:
        """Workers the scheduler knows now (asked through a short-lived client)."""
        from distributed import Client

        with Client(self.address, timeout=5, set_as_default=False) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])
