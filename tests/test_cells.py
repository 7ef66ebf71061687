"""make cells: one network for several recordings, trained once, diagnosed at each cell in its own child run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from mlflow.tracking import MlflowClient

from sbilab.posterior_io import load_posterior
from sbilab.recordings.allen import allen_recording
from sbilab.recordings.recording import protocol_keys
from sbilab.rng import RunSeeds, seeded
from sbilab.tracking import download_artifacts

CELLS = (518290966, 509881736)  # the two cells shipped with sbilab
NUM_SAMPLES = 300
TINY = ["simulation.num_simulations=400", "trainer.max_epochs=3", "diagnostics.num_test=30",
        "diagnostics.num_posterior_samples=30", f"diagnostics.num_observation_samples={NUM_SAMPLES}",
        "diagnostics.num_ppc=10", "diagnostics.predictive_distance.num_prior=100", "diagnostics.tarp_num_bootstrap=20"]


def run_cells(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """scripts/train_cells.py as users run it (``make cells``)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train_cells.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def context_of(cell: int) -> list[float]:
    """The protocol context a cell's summaries carry: step current density (µA/cm²) and V0 (mV)."""
    keys = protocol_keys(allen_recording(cell))
    return [keys["current"] / keys["soma_area_cm2"], keys["V0"]]


def test_one_network_is_trained_once_and_each_cell_gets_its_own_diagnosed_child_run(store, tmp_path):
    result = run_cells(["experiment=allen_cells", f"cells=[{CELLS[0]},{CELLS[1]}]", *TINY, *store["overrides"],
                        f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/out"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store["uri"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = {int(r.data.params["observation.cell"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert parent.info.status == "FINISHED" and sorted(children) == sorted(CELLS)
    assert all(child.info.status == "FINISHED" for child in children.values())
    # one training: the network and its curves are the parent's; its data is both cells' simulations
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id, "posterior")}
    assert {"posterior/spec.yaml", "posterior/estimator.pt"} <= parent_files
    assert parent.data.metrics["train/epochs"] >= 1 and parent.data.tags["sbilab.cells"] == f"{CELLS[0]},{CELLS[1]}"
    observations = {}
    for cell, child in children.items():
        assert not client.list_artifacts(child.info.run_id, "posterior")  # no network of its own
        x_o = np.load(download_artifacts(f"runs:/{child.info.run_id}/observation.npy", store["uri"]))
        assert x_o.shape == (9,)  # 7 statistics of the recording, then its protocol's context
        np.testing.assert_allclose(x_o[7:], context_of(cell), rtol=1e-5)
        observations[cell] = x_o
        assert np.isfinite(child.data.metrics["ppc/standardized_distance"])
        assert "sbc/ks_pvalue/gbar_Na" in child.data.metrics  # calibration ran on this cell's protocol
        assert child.data.tags["sbilab.gates"] in ("pass", "fail")
    assert not np.allclose(observations[CELLS[0]][7:], observations[CELLS[1]][7:])
    # each child's samples are the shared network's, drawn for all cells in one batched call at its own x_o
    posterior = load_posterior(f"runs:/{parent.info.run_id}/posterior", store["uri"])
    x_o = torch.as_tensor(np.stack([observations[c] for c in CELLS]), dtype=torch.float32)
    with seeded(RunSeeds(0).observation_samples):
        expected = posterior.sample_batched((NUM_SAMPLES,), x=x_o, show_progress_bars=False)
    for k, cell in enumerate(CELLS):
        samples = np.load(download_artifacts(f"runs:/{children[cell].info.run_id}/posterior_samples.npy",
                                             store["uri"]))
        np.testing.assert_allclose(samples, expected[:, k].numpy(), rtol=1e-5, atol=1e-5)
    # the parent's description is the table of cells, a row per child linking its overlay figure
    description = client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    assert "swept: observation.cell\n" in description  # the protocol keys that follow from the cell are no factors
    for cell, child in children.items():
        assert f"cell_{cell}" in description and f"{child.info.run_id}/artifactPath/plots/ppc_traces.png" in description
    assert "one network" in result.stdout and f"cell {CELLS[1]}" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["cells=[518290966]"], "cells=[518290966]: expected a list of at least two distinct"),
    (["simulator.context=[]"], "simulator.context is empty"),
    # the two shipped cells: this check reads the recordings first, and the other eight live beside the checkout
    (["method=snpe", "cells=[509881736,518290966]"], "an amortised method"),
    (["simulation.num_simulations=5"], "simulation.num_simulations=5 is split over 10 cells"),
])
def test_bad_input_is_one_line_before_any_run(store, tmp_path, args, expected):
    result = run_cells(["experiment=allen_cells", *args, *store["overrides"], f"hydra.run.dir={tmp_path}/out"],
                       timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("sbilab: error: ") and expected in lines[-1], result.stderr
    assert MlflowClient(store["uri"]).search_runs(
        [e.experiment_id for e in MlflowClient(store["uri"]).search_experiments()]) == []


def test_a_given_x_of_the_statistics_alone_gets_the_observed_protocols_context(tmp_path):
    """``observation=summary`` on a simulator with context: 7 statistics get the protocol's 2 values, 9 stay."""
    from sbilab.experiments.compose import compose_run_config
    from sbilab.spec import prepare

    statistics = [12, -63.2, 0.4, -48.1, 160, 1.9, 7]
    for given, expected in ((statistics, [*statistics, *context_of(CELLS[0])]), ([*statistics, 1.5, -80.0],
                                                                                  [*statistics, 1.5, -80.0])):
        cfg, _ = compose_run_config(ROOT / "conf", ["experiment=allen_cells", "observation=summary",
                                                    f"observation.x={given}", f"paths.output_dir={tmp_path}"])
        np.testing.assert_allclose(prepare(cfg).observation.x.numpy(), expected, rtol=1e-5)
