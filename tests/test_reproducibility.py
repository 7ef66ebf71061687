"""Same config and seed → bitwise-identical records across processes; a killed simulation resumes."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

from test_lifecycle import _start

#: diagnostics on (shrunk): SBC ranks, coverage, TARP, L-C2ST and the gates must reproduce too
TINY = ["simulation.num_simulations=300", "trainer=fast", "diagnostics=fast", "diagnostics.num_test=60",
        "diagnostics.num_posterior_samples=60", "diagnostics.num_observation_samples=500",
        "diagnostics.lc2st.num_trials_null=5", "diagnostics.predictive_distance.num_prior=100"]


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
        ranks = np.load(client.download_artifacts(run.info.run_id, "diagnostics/sbc_ranks.npy"))
        metrics = {k: v for k, v in run.data.metrics.items()  # all but timings and memory
                   if not k.startswith(("time/", "memory/")) and "second" not in k}
        records.append((samples, chunks, ranks, metrics))
    (samples_a, chunks_a, ranks_a, metrics_a), (samples_b, chunks_b, ranks_b, metrics_b) = records
    assert len(chunks_a) == len(chunks_b) > 0
    assert all(np.array_equal(a, b) for a, b in zip(chunks_a, chunks_b))
    assert np.array_equal(samples_a, samples_b) and np.array_equal(ranks_a, ranks_b)
    assert "sbc/ks_pvalue/gbar_Na" in metrics_a and "tarp/atc" in metrics_a and "lc2st/pvalue" in metrics_a
    differing = sorted(k for k in metrics_a if metrics_a[k] != metrics_b.get(k))
    assert not differing, [(k, metrics_a[k], metrics_b.get(k)) for k in differing]  # every diagnostic and gate


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
