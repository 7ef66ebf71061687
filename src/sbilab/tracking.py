"""The MLflow run record: store set-up, run lifecycle, params, metrics, artifacts, posterior.

This is the only module that talks to MLflow. A run is FINISHED only when the
whole flow returned; an exception marks it FAILED (message in the
``sbilab.error`` tag and ``error.txt``), Ctrl-C/SIGTERM marks it KILLED.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import psutil
import torch
from filelock import FileLock
from lightning.pytorch.callbacks import Callback

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
from mlflow.entities import Metric, RunStatus  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from sbilab.config import check_tracking_uri  # noqa: E402
from sbilab.errors import TrackingError  # noqa: E402

#: params that describe where things are on this machine, not the experiment
_UNLOGGED_PREFIXES = ("paths.", "tracking.", "hydra.")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → ``{"a.b.c": value}`` (a key pastes back as a Hydra override)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def loggable_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Flattened config without machine-specific paths and URIs (which may hold credentials).

    Values under the user's home folder are written as ``~/...``: a run record
    should not reveal account names or home layouts.
    """
    home = str(Path.home())
    params = {}
    for key, value in flatten(config).items():
        if key.startswith(_UNLOGGED_PREFIXES):
            continue
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        params[key] = text.replace(home, "~") if home not in ("/", "") else text
    return params


def git_commit(root: Path) -> str:
    """The project's git commit (``+dirty`` when the work tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def init_store(uri: str, experiment: str, artifact_location: Optional[str]) -> str:
    """Point MLflow at the store, create schema and experiment once; return the experiment id.

    For SQLite a file lock serialises schema creation and get-or-create, so
    parallel jobs never race on migrations.
    """
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    lock: Any = nullcontext()
    try:
        if uri.startswith("sqlite:///"):
            db_path = Path(uri[len("sqlite:///") :])
            db_path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(db_path) + ".lock", timeout=120)
        with lock:
            client = MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if found is not None:
                return found.experiment_id
            return client.create_experiment(experiment, artifact_location=artifact_location)
    except Exception as error:
        if isinstance(error, TrackingError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrackingError(f"tracking.uri={uri!r}: cannot open the MLflow store ({first_line})") from None


class EpochMetrics(Callback):
    """Lightning callback: ``train/loss``, ``val/loss`` and ``train/lr`` per epoch (step = epoch) on the run."""

    def __init__(self, recorder: "RunRecorder", prefix: str = "") -> None:
        self.recorder = recorder
        self.prefix = prefix

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        # runs after the epoch's validation, when the module has closed both means
        epoch = len(module.val_losses) - 1
        if epoch < 0:
            return
        self.recorder.log_metrics(
            {f"{self.prefix}train/loss": module.train_losses[-1], f"{self.prefix}val/loss": module.val_losses[-1],
             f"{self.prefix}train/lr": trainer.optimizers[0].param_groups[0]["lr"]},  # the rate this epoch ran at
            step=epoch,
        )


class RunRecorder:
    """Writes one MLflow run; every call goes straight to the store (nothing buffered)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = list(params.items())
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in items[start : start + 100]])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(1000 * time.time())
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def log_figure(self, figure: Any, path: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, path)
        plt.close(figure)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_dict(self, data: Mapping[str, Any], path: str) -> None:
        self.client.log_dict(self.run_id, dict(data), path)

    def log_array(self, array: np.ndarray, path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            np.save(local, np.asarray(array), allow_pickle=False)
            parent = str(Path(path).parent)
            self.client.log_artifact(self.run_id, str(local), None if parent == "." else parent)

    def log_torch_state(self, state: Mapping[str, torch.Tensor], path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            torch.save(dict(state), local)
            parent = str(Path(path).parent)
            self.client.log_artifact(self.run_id, str(local), None if parent == "." else parent)

    def epoch_callback(self, prefix: str = "") -> EpochMetrics:
        return EpochMetrics(self, prefix)


@contextmanager
def start_run(
    uri: str,
    experiment: str,
    artifact_location: Optional[str],
    *,
    run_name: Optional[str],
    tags: Mapping[str, str],
    parent_run_id: Optional[str] = None,
) -> Iterator[RunRecorder]:
    """Create a run and yield its recorder; close it FINISHED, FAILED or KILLED.

    SIGTERM is turned into ``KeyboardInterrupt`` while the run is open, so a
    terminated job is marked KILLED rather than left RUNNING.
    """
    experiment_id = init_store(uri, experiment, artifact_location)
    client = MlflowClient(uri)
    mark_stale_runs(uri, experiment)
    all_tags = dict(tags)
    all_tags["sbilab.pid"] = str(os.getpid())
    all_tags["sbilab.host"] = socket.gethostname()
    all_tags["sbilab.pid_start"] = f"{psutil.Process().create_time():.3f}"
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    recorder = RunRecorder(client, run.info.run_id, experiment_id)
    previous = _install_sigterm_handler()
    try:
        yield recorder
    except KeyboardInterrupt:
        _close(client, recorder.run_id, RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException as error:
        _close(client, recorder.run_id, RunStatus.FAILED, f"{type(error).__name__}: {error}",
               traceback.format_exc())
        raise
    else:
        client.set_terminated(recorder.run_id, RunStatus.to_string(RunStatus.FINISHED))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _install_sigterm_handler() -> Any:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return signal.getsignal(signal.SIGTERM)


def _close(client: MlflowClient, run_id: str, status: int, message: str, details: Optional[str] = None) -> None:
    """Best effort: record why the run ended, then set its status (never masks the original error)."""
    try:
        client.set_tag(run_id, "sbilab.error", message[:5000])
        client.log_text(run_id, details or message, "error.txt")
    except Exception as error:  # the store itself may be what failed
        logging.getLogger(__name__).warning("could not record the error of run %s: %s", run_id, error)
    client.set_terminated(run_id, RunStatus.to_string(status))


def mark_stale_runs(uri: str, experiment: str) -> list[str]:
    """Mark RUNNING runs whose process is gone as FAILED (after a SIGKILL); return their ids."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    stale = []
    host = socket.gethostname()
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        pid = run.data.tags.get("sbilab.pid")
        if pid is None or run.data.tags.get("sbilab.host") != host:
            continue  # a sweep parent, or another machine's run: not ours to judge
        if not _process_alive(int(pid), run.data.tags.get("sbilab.pid_start")):
            _close(client, run.info.run_id, RunStatus.FAILED, "process died without closing the run (stale RUNNING)")
            stale.append(run.info.run_id)
    return stale


def _process_alive(pid: int, started: Optional[str]) -> bool:
    """True when ``pid`` runs and (if known) started when the run's process did (no pid reuse)."""
    try:
        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - float(started)) < 0.01
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def download_artifacts(artifact_uri: str, tracking_uri: str | None = None) -> Path:
    """Download an artifact folder (e.g. ``runs:/<id>/posterior``) to a temporary local path."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=tracking_uri))


def load_run_array(uri: str, run_id: str, path: str) -> Optional[np.ndarray]:
    """A ``.npy`` artifact of a run (e.g. ``posterior_samples.npy``); ``None`` when the run has none."""
    folder = str(Path(path).parent) if "/" in path else None
    if not any(item.path == path for item in MlflowClient(uri).list_artifacts(run_id, folder)):
        return None
    return np.load(download_artifacts(f"runs:/{run_id}/{path}", uri))


def create_parent_run(uri: str, experiment: str, artifact_location: Optional[str], *, sweep_id: str,
                      tags: Mapping[str, str]) -> str:
    """Create the RUNNING parent run of a sweep (store and experiment initialised first)."""
    experiment_id = init_store(uri, experiment, artifact_location)
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}",
                            tags={"sbilab.sweep_id": sweep_id, "sbilab.role": "sweep", **tags})
    return run.info.run_id


def child_runs(uri: str, parent_run_id: str) -> list[dict[str, Any]]:
    """Children of a parent run as plain dicts (id, name, status, params, tags, metrics, times)."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=10_000)
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "params": dict(r.data.params),
            "tags": dict(r.data.tags),
            "metrics": dict(r.data.metrics),
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
        }
        for r in runs
    ]


def finish_parent_run(uri: str, parent_run_id: str, jobs_failed: bool = False) -> str:
    """Close a sweep's parent: FINISHED when every job and child finished, else FAILED; return a summary."""
    children = child_runs(uri, parent_run_id)
    counts: dict[str, int] = {}
    for child in children:
        counts[child["status"]] = counts.get(child["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no child runs"
    client = MlflowClient(uri)
    client.set_tag(parent_run_id, "sbilab.children", summary)
    ok = not jobs_failed and bool(children) and counts.get("FINISHED", 0) == len(children)
    if not ok:
        reason = "a job failed (see the sweep's output)" if jobs_failed else "not every child run finished"
        client.set_tag(parent_run_id, "sbilab.error", f"{reason}: {summary}")
    client.set_terminated(parent_run_id, "FINISHED" if ok else "FAILED")
    return summary


def recorder_for(uri: str, run_id: str) -> RunRecorder:
    """A recorder that adds to an existing run (e.g. comparison artifacts on a sweep's parent)."""
    client = MlflowClient(uri)
    return RunRecorder(client, run_id, client.get_run(run_id).info.experiment_id)


# ---------------------------------------------------------------------------------------------
# Sweeps and HPO studies: finding a parent run; the posterior as an MLflow model and its registry.

#: name of the pyfunc posterior model logged from a run (MLflow 3 LoggedModel, ``models:/m-…``)
POSTERIOR_MODEL_NAME = "posterior_model"
#: roles of parent runs (``sbilab.role`` tag) that ``resolve_parent_run`` finds
PARENT_ROLES = ("sweep", "hpo")


def _check_store_exists(uri: str) -> None:
    """Fail with one line when a sqlite store is missing (MlflowClient would create an empty one)."""
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///") :])
        if not db_path.is_file():
            raise TrackingError(f"tracking.uri={uri!r}: no MLflow store at {db_path}")


def resolve_parent_run(uri: str, ref: Optional[str] = None) -> str:
    """The run id of a sweep/HPO parent given its run id, its sweep id (``sbilab.sweep_id``) or
    nothing (the most recent parent run in the store)."""
    from mlflow.exceptions import MlflowException

    _check_store_exists(uri)
    client = MlflowClient(uri)
    if ref and ("'" in ref or '"' in ref or "`" in ref):
        raise TrackingError(f"{ref!r} is neither a run id nor a sweep id")
    if ref:
        try:
            return client.get_run(ref).info.run_id
        except MlflowException:
            pass
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        raise TrackingError(f"the MLflow store {uri} has no experiments")
    found = []
    for role in PARENT_ROLES:
        query = f"tags.`sbilab.role` = '{role}'" + (f" and tags.`sbilab.sweep_id` = '{ref}'" if ref else "")
        found += client.search_runs(experiment_ids, query, max_results=1, order_by=["attributes.start_time DESC"])
    if not found:
        what = f"no run or sweep with id {ref!r}" if ref else "no sweep or HPO parent run"
        raise TrackingError(f"{what} in the MLflow store {uri}")
    return max(found, key=lambda r: r.info.start_time).info.run_id


def _posterior_model_signature(x_dim: int, theta_dim: int) -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([ColSpec("double") for _ in range(x_dim)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, theta_dim))]),
        params=ParamSchema([ParamSpec("num_samples", "long", 1000), ParamSpec("seed", "long", 0)]),
    )


def _model_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("sbilab", "torch", "sbi", "mlflow", "hydra-core", "pyyaml", "numpy"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def log_posterior_model(recorder: RunRecorder, name: str = POSTERIOR_MODEL_NAME) -> str:
    """Log the run's ``posterior/`` artifact as a pyfunc model (models from code: ``sbilab/model.py``).

    Call it after ``posterior/spec.yaml`` and ``posterior/estimator.pt`` were logged. The model is
    an MLflow 3 LoggedModel linked to the run (``models:/m-…``, also reachable as
    ``runs:/<run_id>/posterior_model``); its only artifact is a copy of the posterior folder.
    Returns the model URI.
    """
    import warnings

    import mlflow.pyfunc
    import yaml
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    client, run_id = recorder.client, recorder.run_id
    code_path = Path(__file__).resolve().parent / "model.py"
    model = client.create_logged_model(recorder.experiment_id, name=name, source_run_id=run_id,
                                       model_type="sbi-posterior")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            posterior_dir = Path(client.download_artifacts(run_id, "posterior", tmp))
            spec = yaml.safe_load((posterior_dir / "spec.yaml").read_text())
            local = Path(tmp) / "model"
            with warnings.catch_warnings():  # no input example on purpose: predict would run at log time
                warnings.filterwarnings("ignore", message=".*input example was not provided.*")
                mlflow.pyfunc.save_model(
                    path=str(local),
                    python_model=str(code_path),
                    artifacts={"posterior": str(posterior_dir)},
                    signature=_posterior_model_signature(int(spec["x_dim"]), int(spec["theta_dim"])),
                    pip_requirements=_model_requirements(),
                    mlflow_model=Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                                       run_id=run_id, model_id=model.model_id),
                )
            client.log_model_artifacts(model.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    uri = f"models:/{model.model_id}"
    client.set_tag(run_id, "sbilab.posterior_model", uri)
    return uri


def posterior_model_uri(uri: str, run_id: str, name: str = POSTERIOR_MODEL_NAME) -> Optional[str]:
    """The ``models:/m-…`` URI of a run's READY posterior model, or None when it has none."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
    )
    ready = [m for m in models if str(m.status).upper().endswith("READY")]
    return f"models:/{max(ready, key=lambda m: m.creation_timestamp).model_id}" if ready else None


def register_posterior_model(uri: str, run_id: str, name: Optional[str] = None) -> tuple[str, str, str]:
    """Register a run's posterior model (logging it first if the run has none) as a new version.

    ``name`` defaults to ``<experiment>_posterior``. Returns (name, version, ``models:/<name>/<version>``).
    """
    import re

    from mlflow.exceptions import MlflowException

    _check_store_exists(uri)
    # the registry resolves a `models:/m-…` source through the global tracking URI
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"no run with id {run_id!r} in the MLflow store {uri}") from None
    if run.info.status != "FINISHED":
        raise TrackingError(f"run {run_id} is {run.info.status}: only FINISHED runs are registered")
    if not any(item.path == "posterior/spec.yaml" for item in client.list_artifacts(run_id, "posterior")):
        raise TrackingError(f"run {run_id} has no posterior/ artifact to register")
    model_uri = posterior_model_uri(uri, run_id) or log_posterior_model(recorder_for(uri, run_id))
    if name is None:
        experiment = client.get_experiment(run.info.experiment_id).name
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{experiment}_posterior")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="sbilab posterior: predict(x, params={'num_samples': n}) "
                                                         "→ samples [rows, n, theta_dim]")
    tags = {key: value for key, value in run.data.tags.items()
            if key in ("sbilab.simulator", "sbilab.prior", "sbilab.summary", "sbilab.estimator", "sbilab.method",
                       "sbilab.gates", "sbilab.git_commit")}
    version = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                          model_id=model_uri[len("models:/"):])
    return name, str(version.version), f"models:/{name}/{version.version}"


def set_run_name(uri: str, run_id: str, name: str) -> None:
    """Rename a run (e.g. an HPO study's parent, created as ``sweep-<id>``)."""
    MlflowClient(uri).update_run(run_id, name=name)
