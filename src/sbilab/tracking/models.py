"""The posterior as an MLflow pyfunc model (models from code) and its registry versions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from sbilab.errors import TrackingError
from sbilab.tracking.runs import RunRecorder, recorder_for
from sbilab.tracking.store import check_store_exists, get_or_create

#: name of the pyfunc posterior model logged from a run (MLflow 3 LoggedModel, ``models:/m-…``)
POSTERIOR_MODEL_NAME = "posterior_model"


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
    code_path = Path(__file__).resolve().parents[1] / "model.py"  # sbilab/model.py
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

    check_store_exists(uri)
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

    def find_model() -> Any:
        try:
            return client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    # several processes registering the first version of a new name at once race on the server
    get_or_create(find_model, lambda: client.create_registered_model(
        name, description="sbilab posterior: predict(x, params={'num_samples': n}) → samples [rows, n, theta_dim]"),
        f"registered model {name!r}")
    tags = {key: value for key, value in run.data.tags.items()
            if key in ("sbilab.simulator", "sbilab.prior", "sbilab.summary", "sbilab.estimator", "sbilab.method",
                       "sbilab.gates", "sbilab.git_commit")}
    version = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                          model_id=model_uri[len("models:/"):])
    return name, str(version.version), f"models:/{name}/{version.version}"
