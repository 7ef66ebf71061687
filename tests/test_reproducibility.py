"""Same config and seed → bitwise-identical records across processes; a killed simulation resumes."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

from test_lifecycle import _start

TINY = ["simulation.num_simulations=300", "trainer=fast", "diagnostics.enabled=false",
        "diagnostics.num_observation_samples=500"]


def _only_run(uri: str):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    return client, run


def test_two_processes_give_bitwise_identical_simulations_and_samples(tmp_path):
    records = []
    for name in ("a", "b"):  # separate stores and caches: nothing is shared between the two runs
        root = tmp_path / name
        uri = f"sqlite:///{root}/mlflow.db"
        result = run_train([*TINY, f"tracking.uri={uri}", f"tracking.artifact_location=file://{root}/artifacts",
                            f"paths.cache_dir={root}/cache"])
        assert result.returncode == 0, result.stderr[-2000:]
        client, run = _only_run(uri)
        samples = np.load(client.download_artifacts(run.info.run_id, "posterior_samples.npy"))
        chunks = [np.load(p) for p in sorted((root / "cache").glob("*/*.npy"))]
        records.append((samples, chunks, run.data.metrics["val/loss_best"]))
    (samples_a, chunks_a, loss_a), (samples_b, chunks_b, loss_b) = records
    assert len(chunks_a) == len(chunks_b) > 0
    assert all(np.array_equal(a, b) for a, b in zip(chunks_a, chunks_b))
    assert np.array_equal(samples_a, samples_b) and loss_a == loss_b


@pytest.mark.slow  # ~40 s on a quiet machine; runs in CI with `make test-slow`
def test_rerun_after_a_kill_during_simulation_reuses_finished_chunks(store, tmp_path):
    cache = tmp_path / "cache"
    args = ["simulator.backend=numpy", "simulation.num_simulations=3000", "simulation.chunk_size=250",
            "simulation.num_workers=1", "trainer=fast", "diagnostics.enabled=false",
            *store["overrides"], f"paths.cache_dir={cache}"]
    process = _start(args)
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*/*.npy"))) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "simulation did not progress"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    finished = len(list(cache.glob("*/*.npy")))
    assert 2 <= finished < 12
    result = run_train(args)
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(store["uri"])
    runs = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    rerun = next(r for r in runs if r.info.status == "FINISHED")
    assert rerun.data.metrics["simulation/chunks_from_cache"] >= finished
    assert rerun.data.tags["sbilab.cache"] == "partial"
    assert f"cache: partial ({int(rerun.data.metrics['simulation/chunks_from_cache'])}/12 chunks reused)" in (
        result.stdout + result.stderr)
