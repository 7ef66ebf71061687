"""`simulation=dask` on the real Dask scheduler and two worker processes (DASK_SCHEDULER_ADDRESS from
``dask_env``): the same numbers as `local`, the same cache and resume, a worker lost mid-run survived."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NUM, CHUNK = 12_000, 500


def _spec(tmp_path: Path, backend: str, cache: Path):
    from sbilab.spec import prepare

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"simulation={backend}", f"simulation.chunk_size={CHUNK}", f"simulation.num_simulations={NUM}",
            f"paths.cache_dir={cache}", f"paths.output_dir={tmp_path}/out",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    return prepare(cfg)


def _chunks(cache: Path) -> dict[str, bytes]:
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in sorted(cache.glob("*/*.npy"))}


def test_make_simulate_on_the_cluster_writes_the_local_backends_chunks_bit_for_bit(dask_env, tmp_path):
    def simulate(backend: str) -> subprocess.CompletedProcess:
        args = f"simulation={backend} simulation.num_simulations={NUM} simulation.chunk_size={CHUNK} " \
               f"diagnostics.num_test=1000 paths.cache_dir={tmp_path}/{backend} hydra.run.dir={tmp_path}/out"
        return subprocess.run(["make", "-s", "simulate", f"ARGS={args}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})

    from distributed import Client, get_task_stream

    with Client() as client, get_task_stream(client) as stream:
        on_dask = simulate("dask")
    assert on_dask.returncode == 0, on_dask.stderr[-3000:]
    local = simulate("local")
    assert local.returncode == 0, local.stderr[-3000:]
    chunks = _chunks(tmp_path / "dask")
    assert len(chunks) == NUM // CHUNK + 2 and chunks == _chunks(tmp_path / "local")  # train (24) + test (2)
    tasks = [task for task in stream.data if task["key"].startswith("sbilab-chunk-")]
    assert len(tasks) == len(chunks) and len({task["worker"] for task in tasks}) == 2  # both workers simulated


def test_the_chunk_cache_resumes_a_dask_run_unchanged(dask_env, tmp_path):
    from sbilab.pipeline import simulate

    spec = _spec(tmp_path, "dask", tmp_path / "cache")
    first = simulate(spec, "train", NUM)
    assert first.cache_status == "miss" and first.chunks_total == NUM // CHUNK
    for chunk in sorted((tmp_path / "cache").glob("*/*.npy"))[::5]:  # as if those chunks were never written
        chunk.unlink()
    resumed = simulate(spec, "train", NUM)
    assert resumed.cache_status == "partial" and resumed.chunks_from_cache == NUM // CHUNK - 5
    assert torch.equal(resumed.x, first.x) and torch.equal(resumed.theta, first.theta)


def test_a_worker_killed_mid_run_is_survived_with_the_same_numbers(dask_stack, dask_env, tmp_path):
    from distributed import Client, get_task_stream

    from sbilab.pipeline import simulate

    reference = simulate(_spec(tmp_path, "local", tmp_path / "local"), "train", NUM)
    cache = tmp_path / "dask"
    victim = dask_stack.dask.workers[0]
    killed = threading.Event()

    def kill_after_some_chunks() -> None:
        deadline = time.monotonic() + 300
        while len(list(cache.glob("*/*.npy"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.kill()  # the worker and its nanny, SIGKILL: a node lost
        killed.set()

    killer = threading.Thread(target=kill_after_some_chunks, daemon=True)
    try:
        with Client() as client, get_task_stream(client) as stream:
            victim_address = next(address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
                                  if info["name"] == "worker-0")
            killer.start()
            on_dask = simulate(_spec(tmp_path, "dask", cache), "train", NUM)
        assert killed.is_set()
    finally:
        killer.join(timeout=5)
        dask_stack.dask.start_worker(0)  # the next test gets two workers again
    assert on_dask.chunks_total == NUM // CHUNK and on_dask.cache_status == "miss"
    assert torch.equal(on_dask.x, reference.x) and torch.equal(on_dask.theta, reference.theta)
    workers = {task["worker"] for task in stream.data if task["key"].startswith("sbilab-chunk-")}
    assert victim_address in workers and len(workers) == 2  # the victim had simulated chunks before it died
