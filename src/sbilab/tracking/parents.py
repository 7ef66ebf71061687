"""Parent runs of sweeps, HPO studies and benchmarks: create, list children, close, find."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from mlflow.tracking import MlflowClient

from sbilab.errors import TrackingError
from sbilab.tracking.redaction import scrub_values
from sbilab.tracking.runs import RunRecorder, recorder_for
from sbilab.tracking.standard_tags import mark_model_training
from sbilab.tracking.store import check_store_exists, init_store


def create_parent_run(uri: str, experiment: str, artifact_location: Optional[str], *, sweep_id: str,
                      tags: Mapping[str, str], role: str = "sweep", run_name: Optional[str] = None) -> str:
    """Create the RUNNING parent run of a sweep, HPO study or benchmark (store and experiment initialised first)."""
    experiment_id = init_store(uri, experiment, artifact_location)
    mark_model_training(uri, experiment_id)
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=run_name or f"sweep-{sweep_id}",
                            tags=scrub_values({"sbilab.sweep_id": sweep_id, "sbilab.role": role, **tags}))
    return run.info.run_id


@dataclass
class ParentRun:
    """An open parent run: where its children go, and whether a job failed (set by the driver)."""

    uri: str
    run_id: str
    recorder: RunRecorder
    jobs_failed: bool = False
    summary: str = ""


@contextmanager
def parent_run(uri: str, experiment: str, artifact_location: Optional[str], *, sweep_id: str, role: str,
               tags: Mapping[str, str], run_name: Optional[str] = None) -> Iterator[ParentRun]:
    """A parent run around the children a driver starts: RUNNING inside the block, then closed.

    Closed FINISHED when every child finished and no job failed, KILLED when children were
    killed and none failed, else FAILED (``finish_parent_run``); an exception or Ctrl-C in
    the block counts as a failed job. ``summary`` holds the children's statuses afterwards.
    """
    run_id = create_parent_run(uri, experiment, artifact_location, sweep_id=sweep_id, tags=tags, role=role,
                               run_name=run_name)
    parent = ParentRun(uri, run_id, recorder_for(uri, run_id))
    try:
        yield parent
    except BaseException:
        parent.summary = finish_parent_run(uri, run_id, jobs_failed=True)
        raise
    parent.summary = finish_parent_run(uri, run_id, jobs_failed=parent.jobs_failed)


def check_run_visible(uri: str, run_id: str, what: str) -> None:
    """Fail with one line when the store at ``uri`` lacks run ``run_id`` (``what``): a job on a node that does
    not share the launching machine's SQLite file would otherwise write into a store of its own."""
    from mlflow.exceptions import MlflowException

    hint = "use tracking=server, or keep the SQLite store on a filesystem every node shares (docs/scale-out.md)"
    try:
        check_store_exists(uri)
        MlflowClient(uri).get_run(run_id)
    except (TrackingError, MlflowException):
        raise TrackingError(f"tracking.uri={uri!r}: {what} {run_id} is not in this store; {hint}") from None


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
    """Close a sweep's parent and return a summary: FINISHED when every job and child finished, KILLED when
    none failed but some were killed (Ctrl-C, SIGTERM), else FAILED."""
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
    killed = counts.get("KILLED", 0) > 0 and counts.get("FAILED", 0) == 0
    client.set_terminated(parent_run_id, "FINISHED" if ok else "KILLED" if killed else "FAILED")
    return summary


#: roles of parent runs (``sbilab.role`` tag) that ``resolve_parent_run`` finds
PARENT_ROLES = ("sweep", "hpo", "benchmark")


def resolve_parent_run(uri: str, ref: Optional[str] = None) -> str:
    """The run id of a sweep/HPO parent given its run id, its sweep id (``sbilab.sweep_id``) or
    nothing (the most recent parent run in the store)."""
    from mlflow.exceptions import MlflowException

    check_store_exists(uri)
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
