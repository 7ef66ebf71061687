"""The store: creating it (once, under a file lock), the code version, runs left RUNNING by dead
processes, and reading artifacts back."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import urlparse

import mlflow
import numpy as np
import psutil
from filelock import FileLock
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sbilab.config import check_tracking_uri, server_down_reason
from sbilab.errors import TrackingError
from sbilab.tracking.redaction import scrub

T = TypeVar("T")


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

    For SQLite a file lock serialises schema creation and get-or-create, so parallel
    jobs never race on migrations; on a server, processes that create the same new
    experiment at once race, and the losers read the winner's back (``get_or_create``).
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
            found = get_or_create(lambda: client.get_experiment_by_name(experiment),
                                  lambda: client.create_experiment(experiment, artifact_location=artifact_location),
                                  f"experiment {experiment!r}")
            return found if isinstance(found, str) else found.experiment_id
    except Exception as error:
        if isinstance(error, TrackingError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrackingError(f"tracking.uri={uri!r}: cannot open the MLflow store ({first_line})") from None


def get_or_create(find: Callable[[], Optional[T]], create: Callable[[], Any], what: str, attempts: int = 5,
                  races: tuple[str, ...] = ("RESOURCE_ALREADY_EXISTS",)) -> Any:
    """``find()``, else ``create()``; when ``create()`` fails with one of the error codes ``races`` (another
    process created it in between), ``find()`` again (the winner's transaction may need a moment to show)."""
    for attempt in range(attempts):
        found = find()
        if found is not None:
            return found
        try:
            return create()
        except MlflowException as error:
            if error.error_code not in races:
                raise
            reason = str(error).strip().splitlines()[0] if str(error).strip() else error.error_code
        time.sleep(0.1 * 2**attempt)
    raise TrackingError(f"{what}: creating it failed and it could not be read back after {attempts} tries ({reason})")


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
            close_run(client, run.info.run_id, RunStatus.FAILED, "process died without closing the run (stale RUNNING)")
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


def check_store_exists(uri: str) -> None:
    """Fail with one line when a sqlite store is missing (MlflowClient would create an empty one)."""
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///") :])
        if not db_path.is_file():
            raise TrackingError(f"tracking.uri={uri!r}: no MLflow store at {db_path}")


#: seconds a run whose tracking server stopped answering waits for it to come back, to record how it ended
CLOSE_WAIT_S = 120.0


def server_outage(uri: str) -> Optional[str]:
    """Why the tracking server at ``uri`` does not answer now; None when it does (or the store is no server)."""
    return server_down_reason(uri) if urlparse(uri).scheme in ("http", "https") else None


def wait_for_server(uri: str, seconds: float) -> Optional[str]:
    """Poll a silent tracking server for up to ``seconds``; None once it answers, else why it does not."""
    deadline = time.monotonic() + seconds
    reason = server_outage(uri)
    while reason is not None and time.monotonic() < deadline:
        time.sleep(2.0)
        reason = server_outage(uri)
    return reason


def close_run(client: MlflowClient, run_id: str, status: int, message: Optional[str] = None,
              details: Optional[str] = None, uri: Optional[str] = None) -> None:
    """Record why the run ended (``message``, best effort: never masks the original error), then set its status.

    With the store's ``uri``: a tracking server that does not answer is given ``CLOSE_WAIT_S`` to come
    back (a restarted server still gets the status and the reason); if it does not, ``TrackingError``
    says the run stays RUNNING (the next run on this host marks it FAILED, :func:`mark_stale_runs`).
    """
    reason = wait_for_server(uri, CLOSE_WAIT_S) if uri is not None else None
    if reason is not None:
        raise TrackingError(f"tracking.uri={uri!r}: the server did not answer for {CLOSE_WAIT_S:.0f} s ({reason}); "
                            f"run {run_id} stays RUNNING until the next run on this host marks it FAILED")
    try:
        if message:
            client.set_tag(run_id, "sbilab.error", scrub(message)[:5000])
            client.log_text(run_id, scrub(details or message), "error.txt")
    except Exception as error:  # the store itself may be what failed
        logging.getLogger(__name__).warning("could not record the error of run %s: %s", run_id, error)
    client.set_terminated(run_id, RunStatus.to_string(status))
