"""`method=tsnpe` through the pipeline users run: rounds recorded, calibration on the truncated region, and a
rerun that finds every round's simulations in the cache and reproduces the numbers (the path a run killed
mid-way takes). Real sbi, a real SQLite store, budgets shrunk, no stage off. In `make test-slow` (and CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ["simulation.num_simulations=900", "method.num_rounds=3", "method.num_samples_to_estimate_support=20000",
        "trainer=fast", "trainer.max_epochs=20", "diagnostics=fast", "diagnostics.num_test=40",
        "diagnostics.num_posterior_samples=40", "diagnostics.num_observation_samples=200", "diagnostics.num_ppc=10",
        "diagnostics.lc2st.num_trials_null=5", "diagnostics.predictive_distance.num_prior=100"]


def _run(store, tmp_path):
    from sbilab.pipeline import run
    from sbilab.spec import prepare

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "experiment=two_moons", "method=tsnpe", "estimator=maf", "trainer.ensemble_size=1", *TINY,
            *store["overrides"], f"paths.cache_dir={tmp_path}/cache", f"paths.output_dir={tmp_path}/out"])
    return run(prepare(cfg))


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.slow  # ~30 s (two runs); the rounds, regions and their reproducibility: tests/test_methods.py
def test_tsnpe_records_its_rounds_calibrates_on_the_region_and_reruns_from_the_cache(store, tmp_path):
    client = MlflowClient(store["uri"])
    first = _run(store, tmp_path)
    record = client.get_run(first.run_id)
    assert record.info.status == "FINISHED" and record.data.tags["sbilab.method"] == "tsnpe"
    metrics = record.data.metrics
    masses = _history(client, first.run_id, "round/region_prior_mass")
    assert [step for step, _ in masses] == [1, 2] and all(0 < mass < 1 for _, mass in masses), masses
    assert [v for _, v in _history(client, first.run_id, "round/num_simulations")] == [300, 300, 300]
    assert {"round_0/val/loss", "round_1/val/loss", "val/loss"} <= set(metrics)  # each round's curve
    # calibration on the last round's region (the test set comes from it), gates evaluated
    assert metrics["diagnostics/region_prior_mass"] == masses[-1][1]
    # how much of the final posterior at x_o the last region left out (built to leave out 1e-4 of the one before)
    assert 0.0 <= metrics["diagnostics/posterior_mass_outside_region"] < 0.5
    assert metrics["diagnostics/num_test_points"] + metrics["diagnostics/dropped_test_points"] == 40
    assert {"coverage/error", "tarp/atc", "c2st", "ppc/distance"} <= set(metrics)
    assert record.data.tags["sbilab.gates"] in ("pass", "fail")
    for round_ in (1, 2):
        assert metrics[f"simulation/round_{round_}/chunks_from_cache"] == 0

    # the same config again: every round draws the same θ, so every round comes from the cache
    second = _run(store, tmp_path)
    again = client.get_run(second.run_id).data.metrics
    assert again["simulation/chunks_from_cache"] >= 1
    for round_ in (1, 2):
        assert again[f"simulation/round_{round_}/chunks_from_cache"] >= 1
    assert _history(client, second.run_id, "round/region_prior_mass") == masses
    for key in ("val/loss_best", "diagnostics/region_prior_mass", "coverage/error", "c2st"):
        assert again[key] == metrics[key], key
