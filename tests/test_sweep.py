"""Multirun sweeps: one parent run, children with sweep tags, comparison on the parent, loud failures.

The sweeps run `scripts/train.py --multirun` with the joblib launcher (2 parallel jobs) into a
temporary SQLite store, exactly like `make sweep`: a 2x2 sweep (estimator x budget, `slow`, about
70 s on 2 cores) and a 2-job variant in the fast suite (about 45 s, mostly process start-up).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

TINY = [
    "trainer=fast",
    "diagnostics=fast",
    "diagnostics.num_test=50",
    "diagnostics.num_posterior_samples=50",
    "diagnostics.num_ppc=10",
]


def _store_args(root: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.artifact_location=file://{root}/artifacts",
            f"paths.cache_dir={root}/cache", f"hydra.sweep.dir={root}/multirun"]


def _multirun(root: Path, *args: str):
    return run_train(["--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, *_store_args(root),
                      *args], timeout=600)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root, _multirun(root, "estimator=maf,mdn", "simulation.num_simulations=200,300")


def _runs(root: Path):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("hodgkin_huxley")
    return client, client.search_runs([experiment.experiment_id], max_results=100)


@pytest.mark.slow
def test_sweep_exits_zero_and_reports_each_job(sweep):
    _, result = sweep
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("sbilab: job ") == 4
    assert "sbilab: sweep finished: 4 FINISHED" in result.stdout
    for bad in ("database is locked", "duplicate column", "no such table", "OperationalError", "Traceback"):
        assert bad not in result.stdout + result.stderr, bad


@pytest.mark.slow
def test_one_parent_with_four_finished_children(sweep):
    root, result = sweep
    client, runs = _runs(root)
    parents = [r for r in runs if r.data.tags.get("sbilab.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_id in result.stdout
    sweep_id = parent.data.tags["sbilab.sweep_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and len(runs) == 5
    assert all(r.info.status == "FINISHED" for r in children)
    assert sorted((r.data.tags["choice.estimator"], r.data.params["simulation.num_simulations"]) for r in children) == [
        ("maf", "200"), ("maf", "300"), ("mdn", "200"), ("mdn", "300")]
    for child in children:
        tags = child.data.tags
        assert tags["sbilab.sweep_id"] == sweep_id
        assert tags["choice.trainer"] == "fast" and tags["choice.simulator"] == "hodgkin_huxley"
        assert "val/loss_best" in child.data.metrics
    # each budget simulated once: the cache key does not include the estimator
    cache = sorted(r.data.tags["sbilab.cache"] for r in children)
    assert cache == ["hit", "hit", "miss", "miss"]


@pytest.mark.slow
def test_comparison_artifacts_on_the_parent(sweep):
    root, _ = sweep
    client, runs = _runs(root)
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "sweep")
    found = {item.path for item in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/runs.csv", "comparison/runs.md", "comparison/vs_budget.png",
            "comparison/heatmap.png"} <= found
    table = Path(client.download_artifacts(parent.info.run_id, "comparison/runs.csv")).read_text()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"FINISHED"}
    assert {"estimator", "simulation.num_simulations", "val/loss_best", "tarp/atc", "time/train_s"} <= set(rows[0])
    assert parent.data.tags["sbilab.swept"] in ("estimator, simulation.num_simulations",
                                                "simulation.num_simulations, estimator")


@pytest.mark.slow  # ~40 s on a quiet machine; runs in CI with `make test-slow`
def test_two_job_sweep_has_one_finished_parent_and_compares(tmp_path):
    result = _multirun(tmp_path, "estimator=maf,mdn", "simulation.num_simulations=200", "diagnostics.enabled=false")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "database is locked" not in result.stderr and "Traceback" not in result.stderr
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and parent.info.status == "FINISHED"
    assert sorted(r.data.tags["choice.estimator"] for r in children) == ["maf", "mdn"]
    assert all(r.info.status == "FINISHED" and r.data.tags["sbilab.sweep_id"] == parent.data.tags["sbilab.sweep_id"]
               for r in children)
    assert parent.data.tags["sbilab.swept"] == "estimator"
    # names from the parts (the swept estimator among them); both ran on the same simulations
    assert sorted(r.info.run_name for r in children) == ["hodgkin_huxley·npe·maf·200·s0",
                                                          "hodgkin_huxley·npe·mdn·200·s0"]
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in children}) == 1
    assert parent.info.run_name.endswith("(estimator)")
    description = client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    assert description.startswith("**2 child runs** (2 FINISHED)")
    for child in children:
        link = f"#/experiments/{child.info.experiment_id}/runs/{child.info.run_id}"
        assert f"[{child.info.run_name}]({link})" in description
    found = {item.path for item in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/runs.csv", "comparison/runs.md", "comparison/vs_budget.png"} <= found
    assert "comparison/heatmap.png" not in found  # one factor: no grid
    # both runs conditioned on the same x_o: their posteriors are compared by C2ST
    table = Path(client.download_artifacts(parent.info.run_id, "comparison/posterior_c2st.csv")).read_text()
    (pair,) = list(csv.DictReader(io.StringIO(table)))
    assert {pair["run_id_a"], pair["run_id_b"]} == {r.info.run_id for r in children}
    assert 0.4 <= float(pair["c2st"]) <= 1.0


@pytest.mark.parametrize("uri, reason", [
    ("sqlite:///relative/mlflow.db", "use an absolute sqlite path"),  # refused before anything is created
    ("http://127.0.0.1:9", "no MLflow server answers"),  # nothing listens on the discard port
])
def test_a_parent_run_failure_stops_the_multirun_loudly(tmp_path, uri, reason):
    result = run_train(["--multirun", "hydra/launcher=joblib", f"tracking.uri={uri}",
                        f"hydra.sweep.dir={tmp_path}/multirun", "estimator=maf,mdn"], timeout=120)
    assert result.returncode == 2
    assert f"sbilab: error: cannot create the sweep's parent run: tracking.uri='{uri}'" in result.stderr
    assert reason in result.stderr
    assert "Launching jobs" not in result.stdout + result.stderr  # no job started
    assert "UserWarning" not in result.stderr  # not Hydra's swallowed-callback warning


# --------------------------------------------------------------------------------------------- HPO


def _hpo_settings(project_root, overrides):
    from hydra import compose, initialize_config_dir

    from sbilab.experiments.search_space import load_hpo_settings

    with initialize_config_dir(config_dir=str(project_root / "conf"), version_base="1.3"):
        cfg = compose("hpo_study", overrides=overrides)
    return load_hpo_settings(cfg.hpo), cfg


def test_hpo_settings_and_search_space(project_root):
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from sbilab.errors import ConfigError
    from sbilab.experiments.compose import dedupe_overrides
    from sbilab.experiments.search_space import format_override, search_space

    # Hydra parses the study's settings and the runs' overrides alike
    batch_size = "+hpo.params.trainer.batch_size={type: categorical, choices: [100, 200]}"
    settings, cfg = _hpo_settings(project_root, ["hpo.n_trials=3", "estimator=mdn", "seed=1", batch_size])
    assert settings.n_trials == 3 and settings.n_jobs == 2 and settings.metric == "auto"
    assert cfg.seed == 1 and cfg.estimator.name == "mdn"
    assert list(settings.params["trainer.batch_size"]["choices"]) == [100, 200]
    run_cfg = OmegaConf.create({"estimator": {"hidden_features": 50, "num_components": 10},
                                "trainer": {"learning_rate": 1e-3, "batch_size": 200}})
    space, skipped = search_space(settings.params, run_cfg)
    assert skipped == ["estimator.num_transforms"]  # mdn has no transforms
    assert set(space) == {"estimator.hidden_features", "trainer.learning_rate", "trainer.batch_size"}
    assert format_override("trainer.learning_rate", 0.000123456789) == "trainer.learning_rate=0.000123457"
    assert format_override("a", 1.5e-05) == "a=1.5e-05" and format_override("a", 100.0) == "a=100.0"
    assert dedupe_overrides(["a=1", "b=2", "a=3", "+c=4"]) == ["a=3", "b=2", "+c=4"]
    for bad, message in [(["hpo.n_trials=0"], "hpo.n_trials=0"), (["hpo.direction=up"], "hpo.direction"),
                         (["hpo.params.trainer.learning_rate.low=1"], "low < high")]:
        with pytest.raises(ConfigError, match=message):
            _hpo_settings(project_root, bad)
    with pytest.raises(ConfigCompositionException, match="nope"):  # not an HPO setting: Hydra refuses it
        _hpo_settings(project_root, ["hpo.nope=1"])
    removed, _ = _hpo_settings(project_root, ["~hpo.params.estimator.num_transforms"])
    assert "estimator.num_transforms" not in removed.params
    narrowed, _ = _hpo_settings(project_root, ["hpo.params.estimator.hidden_features.high=64"])
    assert narrowed.params["estimator.hidden_features"]["high"] == 64
    with pytest.raises(ConfigCompositionException, match="missing"):
        _hpo_settings(project_root, ["hpo=missing"])


@pytest.mark.slow
def test_hpo_study_records_trials_as_children_and_the_best_on_the_parent(tmp_path, project_root):
    import json
    import subprocess
    import sys

    args = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.artifact_location=file://{tmp_path}/artifacts",
            f"paths.cache_dir={tmp_path}/cache", "hpo.n_trials=3", "hpo.n_startup_trials=2",
            "simulation.num_simulations=300", "trainer=fast", "diagnostics.enabled=false"]
    done = subprocess.run([sys.executable, str(project_root / "scripts" / "hpo.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=project_root)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("sbilab: trial ") == 3 and "sbilab: best val/loss_best=" in done.stdout
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "hpo")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 3 and len(runs) == 4
    assert all(r.info.status == "FINISHED" and r.data.tags["sbilab.sweep_id"] == parent.data.tags["sbilab.sweep_id"]
               for r in children)
    best = json.loads(Path(client.download_artifacts(parent.info.run_id, "hpo/best.json")).read_text())["best"]
    values = {r.info.run_id: r.data.metrics["val/loss_best"] for r in children}
    assert best["run_id"] == min(values, key=values.get) and best["value"] == pytest.approx(min(values.values()))
    assert parent.data.tags["hpo.best_run_id"] == best["run_id"]
    params = parent.data.params
    for key, value in best["params"].items():
        assert params[f"best.{key}"] == str(value)
        assert next(r for r in children if r.info.run_id == best["run_id"]).data.params[key] == params[f"best.{key}"]
    found = {item.path for item in client.list_artifacts(parent.info.run_id, "hpo")}
    assert {"hpo/best.json", "hpo/trials.csv", "hpo/history.png", "hpo/slices.png"} <= found
    assert len(client.get_metric_history(parent.info.run_id, "hpo/value")) == 3
