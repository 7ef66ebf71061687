"""``python -m services migrate``: an SQLite store into the PostgreSQL-backed server, nothing lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import pytest
from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _make_store(root: Path, prefix: str, model: str, template: Path) -> str:
    """An SQLite store with what sbilab writes: experiments, a sweep parent and children with params,
    metric histories and tags, nested artifacts, a deleted run, a logged model, a registry version.
    ``template``: an empty store with the schema already created (that takes seconds)."""
    root.mkdir(parents=True)
    shutil.copyfile(template, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    with _global_uri(uri):  # the registry resolves `models:/m-…` sources through the global URI
        _fill_store(MlflowClient(uri), root, prefix, model)
    return uri


@contextmanager
def _global_uri(uri: str) -> Iterator[None]:
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def _fill_store(client: MlflowClient, root: Path, prefix: str, model: str) -> None:
    experiment = client.create_experiment(f"{prefix}hodgkin_huxley", artifact_location=f"file://{root}/artifacts")
    other = client.create_experiment(f"{prefix}two_moons", artifact_location=f"file://{root}/artifacts")
    client.set_experiment_tag(experiment, "sbilab.note", "migrated")
    parent = client.create_run(experiment, run_name="sweep", tags={"sbilab.sweep": "s1"})
    for index, estimator in enumerate(["maf", "mdn"]):
        child = client.create_run(experiment, run_name=estimator,
                                  tags={"mlflow.parentRunId": parent.info.run_id, "sbilab.estimator": estimator})
        run_id = child.info.run_id
        client.log_batch(run_id, metrics=[Metric("val/loss", 2.0 - 0.1 * step + index, 1000 + step, step)
                                          for step in range(300)],
                         params=[Param("estimator", estimator), Param("seed", str(index))],
                         tags=[RunTag("sbilab.gates", "pass")])
        folder = root / f"upload-{index}" / "posterior"
        folder.mkdir(parents=True)
        (folder / "estimator.pt").write_bytes(os.urandom(4096))
        (folder / "spec.yaml").write_text(f"estimator: {estimator}\n")
        client.log_artifacts(run_id, str(folder.parent))
        client.set_terminated(run_id, "FINISHED" if index == 0 else "FAILED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    gone = client.create_run(other, run_name="deleted")
    client.delete_run(gone.info.run_id)
    logged = client.create_logged_model(experiment, name="posterior_model", source_run_id=run_id)
    (root / "model").mkdir()
    (root / "model" / "MLmodel").write_text("flavors: {}\n")
    client.log_model_artifacts(logged.model_id, str(root / "model"))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.create_registered_model(model)
    client.create_model_version(model, source=f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id)


def _snapshot(uri: str, prefix: str, model: str, tmp: Path) -> dict:
    """Everything a user reads back: experiments, runs with all data, histories, artifact bytes, models."""
    client = MlflowClient(uri)
    names = {e.experiment_id: e.name for e in client.search_experiments(view_type=ViewType.ALL)
             if e.name.startswith(prefix)}
    experiments = {name: client.get_experiment(eid).tags for eid, name in names.items()}
    runs = {}
    for run in client.search_runs(list(names), run_view_type=ViewType.ALL):
        rid = run.info.run_id
        files = {item.path: Path(client.download_artifacts(rid, item.path, str(tmp))).read_bytes()
                 for item in client.list_artifacts(rid, "posterior")}
        runs[rid] = {"experiment": names[run.info.experiment_id], "name": run.info.run_name,
                     "status": run.info.status, "stage": run.info.lifecycle_stage,
                     "start": run.info.start_time, "end": run.info.end_time, "params": run.data.params,
                     "tags": {k: v for k, v in run.data.tags.items()}, "metrics": run.data.metrics,
                     "history": [(m.step, m.timestamp, m.value) for m in sorted(
                         client.get_metric_history(rid, "val/loss"), key=lambda m: m.step)],
                     "files": files}
    version = client.get_model_version(model, "1")
    model_files = Path(mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp / "m"), tracking_uri=uri))
    return {"experiments": experiments, "runs": runs, "version": (version.run_id, version.source, version.status),
            "model": sorted(p.name for p in model_files.iterdir())}


def _migrate(stack, source: str) -> subprocess.CompletedProcess:
    path = source[len("sqlite:///"):] if source.startswith("sqlite:///") else source
    return subprocess.run([sys.executable, "-m", "services", "migrate", "--state", str(stack.state), path],
                          cwd=ROOT / "scripts", capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")})


def test_migration_keeps_every_run_metric_artifact_and_model(mlflow_stack, tracking_env, tmp_path, empty_store_db):
    source = _make_store(tmp_path / "store", "m1_", "m1_posterior", empty_store_db)
    with _global_uri(source):
        before = _snapshot(source, "m1_", "m1_posterior", tmp_path / "before")
    assert len(before["runs"]) == 4 and sum(len(run["history"]) for run in before["runs"].values()) == 600

    server_uri = tracking_env["MLFLOW_TRACKING_URI"]
    server = MlflowClient()  # the server, from the environment
    existing = server.create_experiment("m1_hodgkin_huxley")  # a name the server has already: merged into it
    result = _migrate(mlflow_stack, source)
    assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "store").rename(tmp_path / "moved")  # from now on only the server has the bytes
    assert _snapshot(server_uri, "m1_", "m1_posterior", tmp_path / "after") == before
    assert server.get_experiment_by_name("m1_hodgkin_huxley").experiment_id == existing
    assert all(server.get_run(rid).info.artifact_uri.startswith("mlflow-artifacts:/migrated/")
               for rid in before["runs"])
    new = server.create_experiment("m1_after")  # the id sequence was moved past the copied ids
    assert int(new) > max(int(e.experiment_id) for e in server.search_experiments(view_type=ViewType.ALL)
                          if e.name != "m1_after")

    again = _migrate(mlflow_stack, str(tmp_path / "moved" / "mlflow.db"))  # same rows: nothing added
    assert again.returncode == 0, again.stderr[-2000:]
    assert _snapshot(server_uri, "m1_", "m1_posterior", tmp_path / "again") == {
        **before, "experiments": {**before["experiments"], "m1_after": {}}}


def test_migration_refuses_a_registry_version_of_another_run(mlflow_stack, tracking_env, tmp_path, empty_store_db):
    first = _make_store(tmp_path / "a", "m2_", "m2_posterior", empty_store_db)
    second = _make_store(tmp_path / "b", "m2_", "m2_posterior", empty_store_db)
    assert _migrate(mlflow_stack, first).returncode == 0
    runs = len(MlflowClient().search_runs([MlflowClient().get_experiment_by_name("m2_hodgkin_huxley").experiment_id]))
    result = _migrate(mlflow_stack, second)
    assert result.returncode == 2
    assert "m2_posterior v1" in result.stderr and "rename" in result.stderr
    assert len(MlflowClient().search_runs([MlflowClient().get_experiment_by_name("m2_hodgkin_huxley")
                                           .experiment_id])) == runs  # nothing of the second store written
