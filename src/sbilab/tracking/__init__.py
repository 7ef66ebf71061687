"""The MLflow run record: store set-up, run lifecycle, params, metrics, artifacts, posterior.

This is the only module that talks to MLflow. A run is FINISHED only when the
whole flow returned; an exception marks it FAILED (message in the
``sbilab.error`` tag and ``error.txt``), Ctrl-C/SIGTERM marks it KILLED.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A tracking server that stops answering fails a request in about 10 s (MLflow's defaults, 7 retries with
# backoff 2 and a 120 s timeout, take minutes): the run then fails with the reason (docs/scale-out.md).
# MLflow's own variables: set them in the environment to choose otherwise.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

from sbilab.tracking.datasets import DatasetRecord, log_datasets, recording_record  # noqa: E402
from sbilab.tracking.describe import (  # noqa: E402
    DESCRIPTION_TAG,
    gate_margin,
    gate_metrics,
    gates_markdown,
    run_description,
    set_description,
)
from sbilab.tracking.models import (  # noqa: E402
    POSTERIOR_MODEL_NAME,
    log_posterior_model,
    posterior_model_uri,
    register_posterior_model,
)
from sbilab.tracking.parents import (  # noqa: E402
    PARENT_ROLES,
    ParentRun,
    check_run_visible,
    child_runs,
    create_parent_run,
    finish_parent_run,
    parent_run,
    resolve_parent_run,
)
from sbilab.tracking.runs import (  # noqa: E402
    EpochMetrics,
    RunRecorder,
    flatten,
    loggable_params,
    recorder_for,
    set_run_name,
    start_run,
)
from sbilab.tracking.standard_tags import (  # noqa: E402
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    mark_model_training,
    source_tags,
)
from sbilab.tracking.store import (  # noqa: E402
    download_artifacts,
    git_commit,
    init_store,
    load_run_array,
    mark_stale_runs,
)

__all__ = [
    "DESCRIPTION_TAG", "EXPERIMENT_KIND_TAG", "MODEL_TRAINING_KIND", "DatasetRecord", "gate_margin", "gate_metrics",
    "gates_markdown", "log_datasets", "mark_model_training", "recording_record", "run_description", "set_description",
    "source_tags",
    "POSTERIOR_MODEL_NAME", "PARENT_ROLES", "EpochMetrics", "ParentRun", "RunRecorder", "check_run_visible",
    "child_runs",
    "create_parent_run",
    "download_artifacts", "finish_parent_run", "flatten", "git_commit", "init_store", "load_run_array",
    "log_posterior_model", "loggable_params", "mark_stale_runs", "parent_run", "posterior_model_uri", "recorder_for",
    "register_posterior_model", "resolve_parent_run", "set_run_name", "start_run",
]
