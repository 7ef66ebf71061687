"""Issue 14 end to end: a tiny HH run at θ* is judged well-specified; the same run at an x_o no
simulation could produce (every statistic 1e6) is judged misspecified, FINISHED, warned about in
plain words, with its L-C2ST and the report recorded (nothing crashes on the way)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

TINY = [
    "simulation.num_simulations=300",
    "simulation.chunk_size=100",
    "simulation.num_workers=1",
    "trainer=fast",
    "diagnostics=fast",
    "diagnostics.num_test=100",
    "diagnostics.num_posterior_samples=50",
    "diagnostics.num_ppc=10",
]
IMPOSSIBLE = ["observation=summary", "observation.x=[1e6,1e6,1e6,1e6,1e6,1e6,1e6]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("misspecified")
    uri = f"sqlite:///{root}/mlflow.db"
    store = [f"tracking.uri={uri}", f"tracking.artifact_location=file://{root}/artifacts",
             f"paths.cache_dir={root}/cache"]
    out = {}
    for name, extra in (("simulated", []), ("impossible", IMPOSSIBLE)):
        result = run_train([*TINY, *store, *extra, f"tracking.run_name={name}"])
        assert result.returncode == 0, result.stderr[-3000:]
        out[name] = result.stdout
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hodgkin_huxley").experiment_id
    found = {r.info.run_name: r for r in client.search_runs([experiment])}
    return client, {name: (found[name], stdout) for name, stdout in out.items()}


def test_observation_the_simulator_produced_is_well_specified(runs):
    client, by_name = runs
    run, stdout = by_name["simulated"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["sbilab.misspecified"] == "false"
    assert run.data.metrics["misspecification/mmd_pvalue"] >= 0.01
    assert {"lc2st/statistic", "lc2st/pvalue", "lc2st/nf_pvalue"} <= set(run.data.metrics)
    assert "WARNING" not in stdout


def test_impossible_observation_is_misspecified_finished_and_warned(runs):
    client, by_name = runs
    run, stdout = by_name["impossible"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["sbilab.misspecified"] == "true"
    assert run.data.tags["sbilab.tarp_sbi_version"]
    metrics = run.data.metrics
    assert metrics["misspecification/mmd_pvalue"] < 0.01 and metrics["misspecification/misspecified"] == 1.0
    assert "lc2st/pvalue" in metrics  # computed, reported ...
    gates = {c["name"] for c in _json(client, run, "diagnostics/gates.json")["checks"]}
    assert not any(name.startswith("lc2st/") for name in gates)  # ... but not gated at an impossible x_o
    assert "sbilab: WARNING: the observation does not look like anything the simulator produces" in stdout
    report = Path(client.download_artifacts(run.info.run_id, "diagnostics/report.html")).read_text()
    assert "does not look like anything the simulator produces" in report and "data:image/png;base64," in report
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/pairplot.png", "plots/misspecification.png", "plots/lc2st_pp.png"} <= artifacts


def _json(client: MlflowClient, run, path: str) -> dict:
    import json

    return json.loads(Path(client.download_artifacts(run.info.run_id, path)).read_text())
