"""What the entry scripts print around a run: run id, verdict, where to look (no Hydra here)."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Mapping, Optional, Sequence
from urllib.parse import urlparse

if TYPE_CHECKING:  # the sweep callback imports this module in the launching process: nothing heavy
    from sbilab.spec import RunSpec

#: exit code of `diagnostics.strict=true` runs whose gates failed
GATES_FAILED_EXIT = 3
#: metrics shown on a sweep's one-line-per-job progress
PROGRESS_METRICS = ("val/loss_best", "c2st", "tarp/atc", "coverage/error")
#: metrics shown on make cells' line per cell
CELL_METRICS = ("ppc/standardized_distance", "ppc/standardized_distance_median", "time/total_s")


#: the MLflow 3 UI's view for model training (its sidebar toggle; the default view is GenAI)
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def ui_command() -> str:
    """How this user opens the UI: ``sbilab ui`` from the installed command, ``make ui`` in the repository."""
    return os.environ.get("SBILAB_UI_COMMAND", "make ui")


def ui_hint(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look at a run: the UI URL (after `make ui`) for the default store, in the model-training view."""
    base = tracking_uri if urlparse(tracking_uri).scheme in ("http", "https") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def train_and_report(spec: RunSpec, parent_run_id: Optional[str] = None,
                     extra_tags: Optional[Mapping[str, str]] = None) -> int:
    """Run the pipeline, print run id, verdict and how to open it; return the exit code."""
    from sbilab.pipeline import run

    started = time.perf_counter()
    result = run(spec, parent_run_id=parent_run_id, extra_tags=extra_tags)
    strict_failure = result.gates == "fail" and spec.diagnostics.strict
    if parent_run_id:
        tags = extra_tags or {}
        shown = " ".join(f"{k}={result.metrics[k]:.4g}" for k in PROGRESS_METRICS if k in result.metrics)
        misspecified = " MISSPECIFIED" if result.warnings else ""
        print(f"sbilab: job {tags.get('sbilab.job', '?')} done: run {result.run_id} "
              f"[{tags.get('sbilab.overrides', '')}] {shown} gates={result.gates}{misspecified} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        return GATES_FAILED_EXIT if strict_failure else 0
    print(f"sbilab: run {result.run_id} FINISHED (experiment {result.experiment_id})")
    if result.chosen:
        print(f"sbilab: {result.chosen}")
    if result.gates is not None:
        print(f"sbilab: calibration gates: {result.gates.upper()}")
    for line in result.explanation:
        print(f"sbilab: {line}")
    for warning in result.warnings:
        print(f"sbilab: WARNING: {warning}")
    if result.gates == "fail" or result.warnings:
        print("sbilab: the run's description lists every gate with its value and threshold")
    link = ui_hint(spec.tracking.uri, result.experiment_id, result.run_id)
    print(f"sbilab: open it with `{ui_command()}`, then {link}")
    sys.stdout.flush()
    if strict_failure:
        print("sbilab: diagnostics.strict=true and a gate failed: exiting non-zero", file=sys.stderr)
        return GATES_FAILED_EXIT
    return 0


def cells_and_report(specs: "Sequence[RunSpec]") -> int:
    """Train one network for many cells, diagnose it at each; print a line per cell and the parent's link."""
    from sbilab.experiments.cells import describe, train_cells

    result = train_cells(specs)
    for cell in result.cells:
        shown = " ".join(f"{k}={cell.metrics[k]:.4g}" for k in CELL_METRICS if k in cell.metrics)
        print(f"sbilab: cell {cell.cell}: run {cell.run_id} {shown} gates={cell.gates}", flush=True)
    describe(result, specs[0].tracking.uri)
    passed = sum(cell.gates == "pass" for cell in result.cells)
    print(f"sbilab: run {result.run_id} FINISHED (experiment {result.experiment_id}): one network, "
          f"{len(result.cells)} cells, gates pass on {passed}; simulated and trained in {result.train_seconds:.0f} s, "
          f"{result.total_seconds:.0f} s in all")
    link = ui_hint(specs[0].tracking.uri, result.experiment_id, result.run_id)
    print(f"sbilab: open it with `{ui_command()}`, then {link}")
    sys.stdout.flush()
    return 0


def simulate_and_report(spec: RunSpec) -> int:
    """Simulate (or find in the cache) the datasets a run of ``spec`` needs; print where they are."""
    from sbilab.pipeline import simulate

    purposes = [("train", spec.simulation.num_simulations)]
    if spec.diagnostics.enabled:
        purposes.append(("test", spec.diagnostics.num_test))
    for purpose, num in purposes:
        data = simulate(spec, purpose, num)
        print(f"sbilab: {purpose}: {num} simulations, {data.num_invalid} invalid, cache {data.cache_status} "
              f"({data.chunks_from_cache}/{data.chunks_total} chunks reused), {data.seconds:.1f}s, key {data.key}")
    return 0
