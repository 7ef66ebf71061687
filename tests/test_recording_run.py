"""``experiment=allen_cell`` end to end on a shipped cell, on a tiny budget, into a temporary SQLite store."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

from sbilab.recordings import allen_recording, protocol_keys

pytestmark = pytest.mark.slow  # ~60 s: the 1,450 ms protocol, five truncated rounds and the diagnostics

CELL = 518290966  # shipped; not the preset's default cell, so the key is seen to pick the cell
TINY = [
    "experiment=allen_cell", f"observation.cell={CELL}",
    "simulation.num_simulations=400", "trainer=fast", "simulation.num_workers=1",
    "diagnostics=fast", "diagnostics.num_test=50", "diagnostics.num_posterior_samples=50",
    "diagnostics.num_observation_samples=300", "diagnostics.num_ppc=10", "diagnostics.lc2st.enabled=false",
    "diagnostics.misspecification.logprob=false", "diagnostics.predictive_distance.num_prior=300",
    "method.num_samples_to_estimate_support=10000",  # the preset's five rounds; fewer draws place each region
]


@pytest.fixture(scope="module")
def recording_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("allen")
    uri = f"sqlite:///{root}/mlflow.db"
    result = run_train([*TINY, f"tracking.uri={uri}", f"tracking.artifact_location=file://{root}/artifacts",
                        f"paths.cache_dir={root}/cache"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hodgkin_huxley_8p").experiment_id])
    return client, run


def test_the_run_records_the_recording_and_its_protocol(recording_run):
    client, run = recording_run
    assert run.info.status == "FINISHED"
    params, recording = run.data.params, allen_recording(CELL)
    assert params["observation.cell"] == str(CELL) and params["recording.cell_id"] == str(CELL)
    assert params["recording.digest"] == recording.digest() and params["recording.junction_potential_mV"] == "-14.0"
    for key, value in protocol_keys(recording).items():  # the simulator ran the recording's protocol
        assert float(params[f"simulator.{key}"]) == pytest.approx(value, rel=1e-12), key
    assert params["summary.t_off"] == params["simulator.t_off"]  # the summary followed the protocol
    inputs = {tag.value: entry.dataset for entry in run.inputs.dataset_inputs for tag in entry.tags
              if tag.key == "mlflow.data.context"}
    assert set(inputs) == {"training", "observation"}
    assert inputs["observation"].name == f"cell_{CELL}_sweep_57.npz"
    assert str(recording.source).endswith(inputs["observation"].name)


def test_the_run_logs_the_predictive_distance_and_the_overlay(recording_run):
    client, run = recording_run
    metrics = run.data.metrics
    per_sample = np.load(client.download_artifacts(run.info.run_id, "diagnostics/ppc_standardized_distance.npy"))
    assert per_sample.shape == (300 - metrics["ppc/standardized_distance_invalid"],)
    assert metrics["ppc/standardized_distance"] == pytest.approx(float(per_sample.mean()))
    assert "ppc/distance" in metrics and "sbc/ks_pvalue/gbar_Na" in metrics  # calibration still runs
    plots = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/ppc_traces.png" in plots and "plots/ppc.png" not in plots


def test_the_preset_runs_five_truncated_rounds_and_calibrates_on_the_last_region(recording_run):
    client, run = recording_run
    assert run.data.params["method.name"] == "tsnpe" and run.data.params["trainer.max_epochs"] == "-1"
    rounds = client.get_metric_history(run.info.run_id, "round/num_simulations")
    assert [m.step for m in rounds] == [0, 1, 2, 3, 4] and sum(m.value for m in rounds) == 400
    assert 0 < run.data.metrics["diagnostics/region_prior_mass"] <= 1
    assert client.get_experiment(run.info.experiment_id).name == "hodgkin_huxley_8p"
