"""A real Dask scheduler and two worker processes: a client maps work over them and survives a lost worker."""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest

pytestmark = pytest.mark.slow


def _square_slowly() -> Callable[[int], tuple[int, int, int]]:
    """One unit of work (its result, and the process that computed it), defined locally: the workers
    cannot import this test module, so it must travel by value (cloudpickle), as a user's would."""

    def square(index: int) -> tuple[int, int, int]:
        time.sleep(0.2)
        return index, index * index, os.getpid()

    return square


def _run(client, indices: range, on_half_done=None) -> dict[int, tuple[int, int]]:
    from distributed import as_completed

    task = _square_slowly()
    futures = [client.submit(task, index, pure=False, retries=2) for index in indices]
    results: dict[int, tuple[int, int]] = {}
    for done, future in enumerate(as_completed(futures), start=1):
        index, value, pid = future.result()
        results[index] = (value, pid)
        if on_half_done is not None and done == len(futures) // 4:
            on_half_done()
    return results


def test_a_client_from_the_environment_maps_over_both_workers(dask_env):
    from distributed import Client

    with Client() as client:  # the scheduler's address comes from DASK_SCHEDULER_ADDRESS
        assert client.scheduler.address == dask_env["DASK_SCHEDULER_ADDRESS"]
        results = _run(client, range(40))
    assert {index: value for index, (value, _) in results.items()} == {i: i * i for i in range(40)}
    assert len({pid for _, pid in results.values()}) == 2  # both worker processes took part
    assert os.getpid() not in {pid for _, pid in results.values()}


def test_a_worker_killed_mid_run_is_survived(dask_stack, dask_env):
    """SIGKILL to a worker and its nanny (a node lost) while tasks run: its tasks are recomputed."""
    from distributed import Client

    cluster = dask_stack.dask
    with Client() as client:
        try:
            results = _run(client, range(60), on_half_done=cluster.workers[0].kill)
            assert len(client.scheduler_info()["workers"]) == 1
        finally:
            cluster.start_worker(0)  # the next test gets two workers again
    assert {index: value for index, (value, _) in results.items()} == {i: i * i for i in range(60)}
    assert len({pid for _, pid in results.values()}) >= 2  # the victim had computed some before it died
