"""Four parallel jobs (joblib launcher) writing full small runs into one SQLite store lose nothing."""

from __future__ import annotations

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

EXPECTED_ARTIFACTS = {"config.yaml", "posterior_samples.npy", "observation.npy", "posterior/spec.yaml",
                      "posterior/estimator.pt", "plots/loss.png", "plots/pairplot.png", "plots/ppc.png",
                      "plots/sbc_ranks.png", "plots/coverage.png", "plots/tarp.png", "diagnostics/gates.json"}


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.mark.slow
def test_four_parallel_jobs_lose_no_run_metric_or_artifact(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # a fresh store: the sweep callback must create it safely
    result = run_train(
        ["--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "seed=0,1,2,3",
         "simulation.num_simulations=300", "trainer=fast", "diagnostics=fast", "diagnostics.num_test=40",
         "diagnostics.num_posterior_samples=40", "diagnostics.num_ppc=10",
         f"tracking.uri={uri}", f"tracking.artifact_location=file://{tmp_path}/artifacts",
         f"paths.cache_dir={tmp_path}/cache", f"hydra.sweep.dir={tmp_path}/multirun"],
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for bad in ("database is locked", "duplicate column", "OperationalError"):
        assert bad not in result.stdout + result.stderr, bad
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hodgkin_huxley")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 5 and len(children) == 4
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1", "2", "3"]
    for run in children:
        assert run.info.status == "FINISHED"
        epochs = int(run.data.metrics["train/epochs"])
        for name in ("train/loss", "val/loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert steps == list(range(epochs)), (name, steps)
        assert EXPECTED_ARTIFACTS <= _artifacts(client, run.info.run_id)
