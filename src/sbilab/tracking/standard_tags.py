"""MLflow's own tags, filled the way its UI expects: a run's source, commit and user; an experiment's kind.

MLflow fills the source tags itself only for fluent runs; sbilab creates runs with
``MlflowClient``, so it sets them here, without anything secret: the entry script relative
to the project root (never an absolute home path), the bare commit hash (no remote URL,
which may hold a token), and the login name, as MLflow's own default does.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Optional

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

from sbilab.tracking.store import get_or_create, git_commit

#: the experiment tag the MLflow 3 UI reads to tell model training from GenAI experiments
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: its value for model-training experiments (the UI's "Machine learning" kind)
MODEL_TRAINING_KIND = "custom_model_development"


def source_name(root: Path, entry: Optional[str] = None) -> str:
    """The entry point (default ``sys.argv[0]``) relative to ``root`` when inside it, else its file name."""
    entry = entry if entry is not None else (sys.argv[0] if sys.argv and sys.argv[0] else "python")
    path = Path(entry)
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        return path.name or entry


def source_tags(root: Path, entry: Optional[str] = None) -> dict[str, str]:
    """``mlflow.source.name``/``type``, ``mlflow.source.git.commit`` (when known) and ``mlflow.user``."""
    tags = {MLFLOW_SOURCE_NAME: source_name(root, entry), MLFLOW_SOURCE_TYPE: "LOCAL"}
    commit = git_commit(root).split("+")[0]
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit
    try:
        tags[MLFLOW_USER] = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. an anonymous container user)
        pass
    return tags


def mark_model_training(uri: str, experiment_id: str) -> None:
    """Tag the experiment as model training (once; a kind chosen in the UI is left as it is).

    Processes that start in a new experiment at once race on a server: each sees no tag, and the
    losers' inserts fail as BAD_REQUEST (an IntegrityError on the unique key); they then find the winner's tag.
    """
    client = MlflowClient(uri)
    get_or_create(lambda: EXPERIMENT_KIND_TAG in client.get_experiment(experiment_id).tags or None,
                  lambda: client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND),
                  f"the {EXPERIMENT_KIND_TAG} tag of experiment {experiment_id}",
                  races=("BAD_REQUEST",))
