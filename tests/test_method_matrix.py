"""Every method × a representative estimator × two simulators, and every experiment preset, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_train
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

CONF = Path(__file__).resolve().parents[1] / "conf"
METHODS = {
    "npe": "maf",
    "snpe": "maf",
    "nle": "maf",
    "nre": "classifier_mlp",
    "nre_c": "classifier_resnet",
    "fmpe": "vf_mlp",
    "npse": "vf_mlp",
}
TINY = ["simulation.num_simulations=300", "trainer=fast", "diagnostics.enabled=false",
        "diagnostics.num_observation_samples=50", "diagnostics.num_ppc=10"]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["two_moons", "gaussian_linear"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_runs_end_to_end(store, tmp_path, simulator, method):
    from sbilab.pipeline import run
    from sbilab.spec import prepare

    # one network: the gaussian_linear preset's ensemble is NPE's (snpe refuses one; MCMC methods would sample 10)
    cfg = _compose([f"experiment={simulator}", f"method={method}", f"estimator={METHODS[method]}", *TINY,
                    "trainer.ensemble_size=1", *store["overrides"], f"paths.cache_dir={tmp_path}/cache",
                    f"paths.output_dir={tmp_path}/out",
                    f"tracking.experiment={simulator}"])
    result = run(prepare(cfg))
    run_record = MlflowClient(store["uri"]).get_run(result.run_id)
    assert run_record.info.status == "FINISHED"
    assert run_record.data.tags["sbilab.method"] == method
    assert "val/loss_best" in run_record.data.metrics


@pytest.mark.slow
def test_every_experiment_preset_runs(store, tmp_path):
    presets = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    result = run_train(["--multirun", f"experiment={','.join(presets)}", *TINY, *store["overrides"],
                        f"paths.cache_dir={tmp_path}/cache", f"hydra.sweep.dir={tmp_path}/multirun"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store["uri"])
    children = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == len(presets)
    assert all(r.info.status == "FINISHED" for r in children)
