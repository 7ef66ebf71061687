"""sbilab as a client of scale-out services, checked without any service running (tests/scaleout has
the real ones): where the tracking URI comes from, what a dead server costs, what never reaches a
run record, and what a sweep job checks about the machine it landed on."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sbilab.config import check_tracking_uri
from sbilab.errors import ConfigError, TrackingError
from sbilab.experiments.sweep import MARKER_ENV, SweepJob, check_job_sees_sweep
from sbilab.tracking.redaction import scrub

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_tracking_server_takes_mlflows_uri_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert _compose(["tracking=server"]).tracking.uri == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.lab.example:8443")
    assert _compose(["tracking=server"]).tracking.uri == "https://mlflow.lab.example:8443"
    assert _compose([]).tracking.uri.startswith("sqlite:////")  # the default store stays the local one


def test_a_server_that_does_not_answer_is_one_line_within_seconds(monkeypatch):
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    with pytest.raises(TrackingError) as error:
        check_tracking_uri(_compose(["tracking=server"]).tracking.uri)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"tracking.uri='{uri}' (from MLFLOW_TRACKING_URI): no MLflow "
                                                      "server answers (")


def test_credentials_are_scrubbed_from_recorded_text(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-Pa55")
    text = "tracking.uri=https://alice:s3cret-Pa55@mlflow.lab:443 seed=3 failed: HTTP 401 for s3cret-Pa55"
    assert scrub(text) == "tracking.uri=https://***@mlflow.lab:443 seed=3 failed: HTTP 401 for ***"
    untouched = "sqlite:////home/a/mlruns/mlflow.db estimator=maf"
    assert scrub(untouched) == untouched


def test_a_sweep_job_refuses_a_node_that_does_not_share_the_cache_or_the_store(store, tmp_path, monkeypatch):
    from sbilab import tracking
    from sbilab.spec import prepare

    cache = tmp_path / "cache"
    spec = prepare(_compose([*store["overrides"], f"paths.cache_dir={cache}", f"paths.output_dir={tmp_path}/out",
                             "simulation.num_simulations=100"]))
    with tracking.start_run(store["uri"], "hodgkin_huxley", store["artifacts"], run_name="parent", tags={}) as parent:
        pass
    marker = cache / ".sweeps" / "2026-11-30_12-00-00"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    job = SweepJob(parent.run_id, {}, {})
    marker.parent.mkdir(parents=True)
    marker.write_text("launcher\n")
    check_job_sees_sweep(spec, job)  # the launching machine's cache and store: nothing to say

    marker.unlink()  # a node that mounts another folder at paths.cache_dir
    with pytest.raises(ConfigError, match=r"^paths.cache_dir='.*' is not the folder the sweep was launched with: "):
        check_job_sees_sweep(spec, job)
    # without caching there is nothing to share
    uncached = replace(spec, simulation=replace(spec.simulation, cache=False))
    check_job_sees_sweep(uncached, job)
    # a node whose SQLite file is another one: the parent run is not there
    elsewhere = uncached.with_tracking(uri=f"sqlite:///{tmp_path}/node-local/mlflow.db")
    with pytest.raises(TrackingError, match=r"the sweep's parent run \w+ is not in this store; use tracking=server"):
        check_job_sees_sweep(elsewhere, job)
    assert not (tmp_path / "node-local" / "mlflow.db").exists()  # and no empty store was created there


@pytest.mark.parametrize("kind", ["experiment", "registered model"])
def test_a_creation_race_lost_to_another_process_reads_the_winners_back(store, kind):
    """The interleaving a sweep's first jobs hit on a server: this process looks, finds nothing, and
    another one creates the thing before this one's create (which then fails RESOURCE_ALREADY_EXISTS)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from sbilab.tracking.store import get_or_create

    mine, theirs = MlflowClient(store["uri"]), MlflowClient(store["uri"])  # two clients of one real store
    if kind == "experiment":
        def read(client):
            return client.get_experiment_by_name("raced")

        def create(client):
            return client.create_experiment("raced")
    else:
        def read(client):
            try:
                return client.get_registered_model("raced")
            except MlflowException:
                return None

        def create(client):
            return client.create_registered_model("raced")

    looks = []

    def find():
        looks.append(read(mine))
        if len(looks) == 1:
            create(theirs)  # the other process wins between this look and this create
        return looks[-1]

    found = get_or_create(find, lambda: create(mine), kind)
    assert looks[0] is None and found is looks[-1] and found.name == "raced"
    with pytest.raises(MlflowException):  # any other failure is not swallowed
        get_or_create(lambda: None, lambda: MlflowClient(store["uri"]).get_run("0" * 32), kind)
