"""A tiny real run through scripts/train.py into a temporary SQLite MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

TINY = [
    "simulation.num_simulations=300",
    "simulation.chunk_size=100",
    "trainer=fast",
    "diagnostics=fast",
    "diagnostics.num_test=60",
    "diagnostics.num_posterior_samples=50",
    "diagnostics.num_ppc=10",
]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri, artifacts = f"sqlite:///{root}/mlflow.db", f"file://{root}/artifacts"
    result = run_train([*TINY, f"tracking.uri={uri}", f"tracking.artifact_location={artifacts}",
                        f"paths.cache_dir={root}/cache"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    assert len(runs) == 1
    return uri, runs[0], result.stdout


def test_run_is_finished_with_the_design_record(finished_run):
    uri, run, stdout = finished_run
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in stdout and "make ui" in stdout
    tags = run.data.tags
    for group, option in [("simulator", "hodgkin_huxley"), ("prior", "hh_box"), ("summary", "hh_features"),
                          ("estimator", "zuko_maf_unconstrained"), ("method", "npe")]:
        assert tags[f"sbilab.{group}"] == option
    assert tags["sbilab.git_commit"] and tags["sbilab.gates"] in ("pass", "fail")
    params = run.data.params
    assert params["simulation.num_simulations"] == "300" and params["estimator.model"] == "zuko_maf"
    assert not any(key.startswith(("paths.", "tracking.")) for key in params)
    metrics = run.data.metrics
    for name in ["train/loss", "val/loss", "val/loss_best", "train/epochs", "time/simulate_s", "time/train_s",
                 "time/diagnose_s", "simulation/per_second", "simulation/invalid", "posterior/logprob_true_theta",
                 "sbc/ks_pvalue/gbar_Na", "sbc/ks_pvalue/gbar_K", "coverage/error", "tarp/atc", "tarp/ks_pvalue",
                 "ppc/distance", "posterior/true_theta_hpd_level"]:
        assert name in metrics, name
    assert 0 <= metrics["posterior/true_theta_hpd_level"] <= 1
    epochs = int(metrics["train/epochs"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == list(range(epochs))
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == epochs
    rates = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/lr"), key=lambda m: m.step)]
    assert len(rates) == epochs and rates[0] == 5e-4 and rates == sorted(rates, reverse=True)  # decays, never rises
    artifacts = _artifacts(client, run.info.run_id)
    for path in ["config.yaml", "posterior_samples.npy", "observation.npy", "posterior/spec.yaml",
                 "posterior/estimator.pt", "plots/pairplot.png", "plots/ppc.png", "plots/loss.png",
                 "diagnostics/gates.json"]:
        assert path in artifacts, path
    gates = json.loads(Path(client.download_artifacts(run.info.run_id, "diagnostics/gates.json")).read_text())
    assert gates["verdict"] == tags["sbilab.gates"]


def test_run_reads_well_in_the_ui(finished_run):
    uri, run, stdout = finished_run
    client = MlflowClient(uri)
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_name == "hodgkin_huxley·npe·zuko_maf_unconstrained·300·s0"
    assert tags["mlflow.source.name"] == "scripts/train.py" and tags["mlflow.user"]
    assert tags["sbilab.git_commit"].startswith(tags["mlflow.source.git.commit"])
    assert f"/runs/{run.info.run_id}?workflowType=machine_learning" in stdout  # the printed link: model training
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the description leads with the verdict; gates/* metrics restate every check as a number
    gates = json.loads(Path(client.download_artifacts(run.info.run_id, "diagnostics/gates.json")).read_text())
    assert tags["mlflow.note.content"].startswith(f"**Calibration gates: {gates['verdict'].upper()}**")
    assert metrics["gates/pass"] == float(gates["verdict"] == "pass")
    assert metrics["gates/failed"] == sum(not check["passed"] for check in gates["checks"])
    for check in gates["checks"]:
        assert (metrics[f"gates/margin/{check['name']}"] >= 0) == check["passed"], check
        assert f"| {check['name']} |" in tags["mlflow.note.content"]
    # the training simulations are its dataset: digest = the cache key, found in the cache folder
    (data,) = run.inputs.dataset_inputs
    cache = Path(uri[len("sqlite:///"):]).parent / "cache"
    assert data.dataset.name == "hodgkin_huxley·hh_box·hh_features·train·300"
    assert (cache / data.dataset.digest).is_dir() and json.loads(data.dataset.source)["uri"] == str(
        cache / data.dataset.digest)
    columns = [c["name"] for c in json.loads(data.dataset.schema)["mlflow_colspec"]]
    assert columns[:2] == ["gbar_Na", "gbar_K"] and len(columns) == 2 + 7  # θ, then the 7 statistics
    assert json.loads(data.dataset.profile)["simulations"] == 300


def test_posterior_round_trips_in_a_fresh_process(finished_run):
    uri, run, _ = finished_run
    code = (
        "import sbilab, torch, numpy as np\n"
        "from sbilab.tracking import download_artifacts\n"
        f"post = sbilab.load_posterior('runs:/{run.info.run_id}/posterior', tracking_uri='{uri}')\n"
        f"x = torch.from_numpy(np.load(download_artifacts('runs:/{run.info.run_id}/observation.npy', '{uri}')))\n"
        "s = post.sample((500,), x=x, show_progress_bars=False)\n"
        "assert s.shape == (500, 2) and torch.isfinite(s).all()\n"
        "print(float(post.log_prob(s[:5], x=x).mean()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    float(out.stdout.strip().splitlines()[-1])


def test_params_hide_home_paths_and_store_uris(monkeypatch, tmp_path):
    from sbilab.tracking import loggable_params

    monkeypatch.setenv("HOME", str(tmp_path))
    params = loggable_params({"observation": {"file": f"{tmp_path}/data/trace.csv"}, "seed": 3,
                              "tracking": {"uri": "http://user:secret@host:5000"}, "paths": {"root": str(tmp_path)}})
    assert params == {"observation.file": "~/data/trace.csv", "seed": "3"}


@pytest.mark.slow  # 52 s at load 6 (durations of the fast suite); runs in CI with `make test-slow`
def test_an_ensemble_run_records_every_member_and_reloads_as_their_mixture(tmp_path):
    uri, artifacts = f"sqlite:///{tmp_path}/mlflow.db", f"file://{tmp_path}/artifacts"
    result = run_train([*TINY, "trainer.ensemble_size=2", f"tracking.uri={uri}",
                        f"tracking.artifact_location={artifacts}", f"paths.cache_dir={tmp_path}/cache"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["ensemble/size"] == 2 and "sbc/ks_pvalue/gbar_Na" in metrics and "coverage/error" in metrics
    for prefix in ("", "member_1/"):  # each member's own curves, one point per epoch
        epochs = int(metrics[f"{prefix}train/epochs"])
        assert len(client.get_metric_history(run.info.run_id, f"{prefix}val/loss")) == epochs
    code = (
        "import sbilab, torch\n"
        f"post = sbilab.load_posterior('runs:/{run.info.run_id}/posterior', tracking_uri='{uri}')\n"
        "assert type(post).__name__ == 'PosteriorEnsemble' and len(post.posteriors) == 2\n"
        "x = torch.zeros(7)\n"
        "s = post.sample((200,), x=x, show_progress_bars=False)\n"
        "assert s.shape == (200, 2) and torch.isfinite(s).all()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
