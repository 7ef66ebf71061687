"""One run's lifecycle and record: params, per-epoch metrics, artifacts; FINISHED, FAILED or KILLED."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import mlflow
import numpy as np
import psutil
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from sbilab import interrupts
from sbilab.errors import RunInterrupted, TrackingError
from sbilab.tracking.redaction import scrub, scrub_values
from sbilab.tracking.standard_tags import mark_model_training
from sbilab.tracking.store import close_run, init_store, mark_stale_runs, server_outage

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
    params = {}
    for key, value in flatten(config).items():
        if key.startswith(_UNLOGGED_PREFIXES):
            continue
        params[key] = hide_home(json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    return params


def hide_home(text: str) -> str:
    """``text`` with the user's home folder written ``~`` (paths in params, dataset sources)."""
    home = str(Path.home())
    return text.replace(home, "~") if home not in ("/", "") else text


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
        items = list(scrub_values(params).items())
        for start in range(0, len(items), 100):
            batch = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in items[start : start + 100]]
            self.client.log_batch(self.run_id, params=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [mlflow.entities.RunTag(k, v) for k, v in scrub_values(tags).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(1000 * time.time())
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def log_figure(self, figure: Any, path: str) -> bytes:
        """Draw ``figure`` once as PNG (at its own resolution, as ``mlflow.log_figure`` would), log it at ``path``
        and close it; returns the PNG, for pages that embed it without drawing it again."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png")
        finally:
            plt.close(figure)
        self.log_bytes(buffer.getvalue(), path)
        return buffer.getvalue()

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, scrub(text), path)

    def log_dict(self, data: Mapping[str, Any], path: str) -> None:
        self.client.log_dict(self.run_id, dict(data), path)

    def log_array(self, array: np.ndarray, path: str) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        self.log_bytes(buffer.getvalue(), path)

    def log_torch_state(self, state: Mapping[str, torch.Tensor], path: str) -> None:
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        self.log_bytes(buffer.getvalue(), path)

    def log_bytes(self, data: bytes, path: str) -> None:
        """``data`` as the artifact file ``path`` (through a temporary file: MLflow logs files)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            local.write_bytes(data)
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

    SIGTERM and Ctrl-C are latched while the run is open (``sbilab.interrupts``), so a
    terminated job is marked KILLED rather than left RUNNING, even when a library swallowed the
    ``KeyboardInterrupt`` and the run went on to its end. A tracking server that
    stops answering fails the run after MLflow's bounded retries (``MLFLOW_HTTP_REQUEST_*``,
    set in ``sbilab.tracking``): the run is closed FAILED with that reason once the server
    answers again, and the error becomes one ``TrackingError`` line.
    """
    experiment_id = init_store(uri, experiment, artifact_location)
    mark_model_training(uri, experiment_id)
    client = MlflowClient(uri)
    mark_stale_runs(uri, experiment)
    all_tags = dict(tags)
    all_tags["sbilab.pid"] = str(os.getpid())
    all_tags["sbilab.host"] = socket.gethostname()
    all_tags["sbilab.pid_start"] = f"{psutil.Process().create_time():.3f}"
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=scrub_values(all_tags))
    recorder = RunRecorder(client, run.info.run_id, experiment_id)
    with interrupts.armed():
        try:
            yield recorder
            interrupts.raise_if_interrupted()  # a library swallowed the signal's exception: still KILLED
        except KeyboardInterrupt as interrupt:
            close_run(client, recorder.run_id, RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)", uri=uri)
            if isinstance(interrupt, RunInterrupted):  # a nested run's: the outer one is closed, its id kept
                raise
            raise RunInterrupted(recorder.run_id, str(interrupt)) from None
        except BaseException as error:
            outage = server_outage(uri)
            if outage is None:
                close_run(client, recorder.run_id, RunStatus.FAILED, f"{type(error).__name__}: {error}",
                          traceback.format_exc(), uri=uri)
                raise
            message = f"the tracking server stopped answering during the run ({outage}): {_first_line(error)}"
            close_run(client, recorder.run_id, RunStatus.FAILED, message, traceback.format_exc(), uri=uri)
            raise TrackingError(f"tracking.uri={uri!r}: run {recorder.run_id} FAILED: {message}") from error
        else:
            close_run(client, recorder.run_id, RunStatus.FINISHED, uri=uri)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def recorder_for(uri: str, run_id: str) -> RunRecorder:
    """A recorder that adds to an existing run (e.g. comparison artifacts on a sweep's parent)."""
    client = MlflowClient(uri)
    return RunRecorder(client, run_id, client.get_run(run_id).info.experiment_id)


def set_run_name(uri: str, run_id: str, name: str) -> None:
    """Rename a run (e.g. an HPO study's parent, created as ``sweep-<id>``)."""
    MlflowClient(uri).update_run(run_id, name=name)
