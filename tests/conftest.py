"""Shared fixtures: the project root, a real SQLite MLflow store in a temp dir, one torch thread."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
torch.set_num_threads(1)


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _fresh_mlflow_tracking_uri():
    """Undo an in-process run's ``mlflow.set_tracking_uri``: MLflow keeps it in a module global that
    outranks ``MLFLOW_TRACKING_URI``, so it would point every later test's clients at a deleted
    temp store (the scale-out tests reach their server through that variable)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory) -> Path:
    """An MLflow SQLite file with the schema migrated once per session (migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path: Path, empty_store_db: Path) -> dict[str, str]:
    """A fresh SQLite MLflow store (absolute URIs), schema created, as Hydra overrides and URIs.

    The schema is created here, before any subprocess writes, as `make`/the sweep
    callback do: a reader opening a half-migrated SQLite file would race the writer.
    """
    from sbilab.tracking import init_store

    db = tmp_path / "mlruns" / "mlflow.db"
    artifacts = tmp_path / "mlruns" / "artifacts"
    uri = f"sqlite:///{db}"
    db.parent.mkdir(parents=True)
    shutil.copyfile(empty_store_db, db)
    init_store(uri, "hodgkin_huxley", f"file://{artifacts}")
    return {
        "uri": uri,
        "artifacts": f"file://{artifacts}",
        "overrides": [f"tracking.uri={uri}", f"tracking.artifact_location=file://{artifacts}"],
    }


def run_train(args: list[str], timeout: float = 300, env: dict | None = None):
    """Run scripts/train.py as a subprocess (the way users run it)."""
    import subprocess

    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env,
    )


class NullTracker:
    """An sbi tracker that records nothing (keeps sbi's trainers from writing ./sbi-logs)."""

    log_dir = None

    def log_metric(self, *a, **k): ...
    def log_metrics(self, *a, **k): ...
    def log_params(self, *a, **k): ...
    def add_figure(self, *a, **k): ...
    def flush(self): ...
