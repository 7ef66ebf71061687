"""What the entry scripts print around a run (no Hydra here: scripts own `@hydra.main`)."""

from __future__ import annotations

import sys
import time
from typing import Mapping, Optional
from urllib.parse import urlparse

from omegaconf import DictConfig

from sbilab.config import check_tracking_uri

#: exit code of `diagnostics.strict=true` runs whose gates failed
GATES_FAILED_EXIT = 3


def ui_hint(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look at a run: the UI URL (after `make ui`) for the default store."""
    base = tracking_uri if urlparse(tracking_uri).scheme in ("http", "https") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


#: metrics shown on a sweep's one-line-per-job progress
PROGRESS_METRICS = ("val/loss_best", "c2st", "tarp/atc", "coverage/error")


def train_and_report(cfg: DictConfig, parent_run_id: Optional[str] = None,
                     extra_tags: Optional[Mapping[str, str]] = None) -> int:
    """Run the pipeline, print run id, verdict and how to open it; return the exit code."""
    started = time.perf_counter()
    check_tracking_uri(str(cfg.tracking.uri))
    from sbilab.parts import build_parts

    parts = build_parts(cfg)  # bad input fails here, before MLflow/Lightning are even imported
    from sbilab.pipeline import run

    result = run(cfg, parts, parent_run_id=parent_run_id, extra_tags=extra_tags)
    if parent_run_id:
        shown = " ".join(f"{k}={result.metrics[k]:.4g}" for k in PROGRESS_METRICS if k in result.metrics)
        print(f"sbilab: job {(extra_tags or {}).get('sbilab.job', '?')} done: run {result.run_id} "
              f"[{(extra_tags or {}).get('sbilab.overrides', '')}] {shown} gates={result.gates} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        return 0 if not (result.gates == "fail" and cfg.diagnostics.strict) else GATES_FAILED_EXIT
    print(f"sbilab: run {result.run_id} FINISHED (experiment {result.experiment_id})")
    if result.gates is not None:
        print(f"sbilab: calibration gates: {result.gates.upper()}")
    hint = ui_hint(str(cfg.tracking.uri), result.experiment_id, result.run_id)
    print(f"sbilab: open it with `make ui`, then {hint}")
    sys.stdout.flush()
    if result.gates == "fail" and cfg.diagnostics.strict:
        print("sbilab: diagnostics.strict=true and a gate failed: exiting non-zero", file=sys.stderr)
        return GATES_FAILED_EXIT
    return 0


def simulate_and_report(cfg: DictConfig) -> int:
    """Simulate (or find in the cache) the datasets a run of ``cfg`` needs; print where they are."""
    from sbilab.parts import build_parts
    from sbilab.pipeline import cache_status, simulate

    parts = build_parts(cfg)
    purposes = [("train", int(cfg.simulation.num_simulations))]
    if cfg.diagnostics.enabled:
        purposes.append(("test", int(cfg.diagnostics.num_test)))
    for purpose, num in purposes:
        data = simulate(cfg, parts, purpose=purpose, num=num)
        print(f"sbilab: {purpose}: {num} simulations, {data.num_invalid} invalid, cache {cache_status(data)} "
              f"({data.chunks_from_cache}/{data.chunks_total} chunks reused), {data.seconds:.1f}s, key {data.key}")
    return 0
