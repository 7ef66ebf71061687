"""Data a run used, as MLflow dataset inputs (the UI's Datasets column and dataset drawer).

A :class:`DatasetRecord` is plain metadata, no data: a name, a digest that is equal exactly
when the data are (for simulations: the cache key), where the data live, the column names
and a few counts. MLflow keeps one dataset per (experiment, name, digest), so two runs on the
same simulations point at the same dataset. The same record serves any input: the training
simulations (context ``training``), a recording used as x_o (context ``observation``), a
held-out test set (context ``test``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from sbilab.tracking.runs import RunRecorder, hide_home

#: MLflow's limit on a dataset digest (``datasets.digest`` is VARCHAR(36))
MAX_DIGEST_LENGTH = 36
#: tries of :func:`log_datasets` when runs of one sweep register the same new dataset at once
LOG_INPUT_TRIES = 4


@dataclass(frozen=True)
class DatasetRecord:
    """What a run records about one input dataset."""

    name: str
    digest: str  # equal iff the data are equal (e.g. the simulation cache key, a file's hash)
    context: str  # how the run used it: "training", "observation", "test", ...
    columns: Sequence[str] = ()  # e.g. θ names then statistic names
    source: Optional[str] = None  # a local path or URI where the data live; None: made in the run, not kept
    profile: Mapping[str, float | int | str] = field(default_factory=dict)  # counts shown in the drawer


def dataset_input(record: DatasetRecord) -> DatasetInput:
    """The MLflow entity of a record: float columns (``mlflow_colspec`` schema), a ``local`` source."""
    if not record.digest or len(record.digest) > MAX_DIGEST_LENGTH:
        raise ValueError(f"dataset digest {record.digest!r}: need 1 to {MAX_DIGEST_LENGTH} characters")
    schema = Schema([ColSpec("float", name) for name in record.columns]) if record.columns else None
    if record.source is None:
        source_type, source = "code", {}
    else:
        source_type, source = "local", {"uri": hide_home(record.source)}
    dataset = Dataset(
        name=record.name,
        digest=record.digest,
        source_type=source_type,
        source=json.dumps(source),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}) if schema else None,
        profile=json.dumps(dict(record.profile)) if record.profile else None,
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, record.context)])


def log_datasets(recorder: RunRecorder, records: Sequence[DatasetRecord], tries: int = LOG_INPUT_TRIES) -> None:
    """Log ``records`` as the run's dataset inputs (logging the same record twice adds nothing).

    MLflow's store looks for an existing (experiment, name, digest) and inserts when it finds
    none, in one transaction: two jobs of a sweep on the same simulations can both find none,
    and the second insert breaks the unique key and rolls back. Trying again finds the first
    job's dataset and links to it, so the error is retried rather than failing the run.
    """
    inputs = [dataset_input(record) for record in records]
    for attempt in range(1, tries + 1):
        try:
            recorder.client.log_inputs(recorder.run_id, datasets=inputs)
            return
        except MlflowException:
            if attempt == tries:
                raise
            time.sleep(0.2 * attempt)


def recording_record(metadata: Mapping[str, Any]) -> DatasetRecord:
    """A recording used as x_o (``Recording.metadata()``) as the run's ``observation`` dataset.

    Named after its file; the digest covers the file's bytes and the corrections applied to
    them (junction potential, membrane area), so runs that saw the same voltages and
    current densities share one dataset.
    """
    corrected = f"{metadata['digest']}/{metadata.get('junction_potential_mV')}/{metadata.get('soma_area_cm2')}"
    return DatasetRecord(
        name=Path(str(metadata["source"])).name, digest=hashlib.sha256(corrected.encode()).hexdigest()[:16],
        context="observation", columns=["time_ms", "voltage_mV"], source=str(metadata["source"]),
        profile={key: value for key, value in metadata.items() if key not in ("source", "digest")},
    )
